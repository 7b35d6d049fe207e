"""7. Segment count: `segment_count` (the definition compiled by the ORM into one query) vs a
hand-written SQL count of the same condition, on N contacts and M events built with
INSERT ... SELECT generate_series.

The condition (issue 13's example): contacts in Asia/Jakarta on the pro or team plan who are
reachable by marketing SMS and completed at least 2 orders of 100 or more in the last 90
days. Both sides run on the same warm database, alternately, several times per run.

Goal (issue 13): at 1M contacts and 10M events, <= 2x the hand-written SQL.
"""

from __future__ import annotations

import datetime as dt

from bench import common as c

CONTACTS = c.scaled(1_000_000, 10_000)
EVENTS = c.scaled(10_000_000, 100_000)
REPEATS = 5  # counts per side per run (after one warm-up each)
DEFINITION = {
    "all": [
        {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"},
        {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
        {"reachable": "sms"},
        {
            "event": "order.completed",
            "count": {"gte": 2},
            "within_days": 90,
            "where": [{"property": "total", "op": "gte", "value": 100}],
        },
    ]
}
# What a developer would write by hand for the same audience.
BARE = """
SELECT count(*) FROM messaging_contact c
WHERE c.erased_at IS NULL
  AND c.timezone = 'Asia/Jakarta'
  AND c.attributes -> 'plan' IN ('"pro"'::jsonb, '"team"'::jsonb)
  AND c.phone <> '' AND NOT c.phone_invalid
  AND EXISTS (SELECT 1 FROM messaging_consent s WHERE s.contact_id = c.id
              AND s.channel = 'sms' AND s.status = 'subscribed')
  AND (SELECT count(*) FROM journeys_event e WHERE e.contact_id = c.id
       AND e.name = 'order.completed' AND e.occurred_at >= %s
       AND jsonb_typeof(e.properties -> 'total') = 'number'
       AND (e.properties ->> 'total')::numeric >= 100) >= 2
"""


def build() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO messaging_contact (external_id, email, phone, whatsapp, first_name,
                last_name, locale, timezone, preferred_channel, attributes, created_via,
                email_undeliverable, phone_invalid, whatsapp_invalid, is_test, created_at,
                updated_at)
            SELECT 'sc-' || g, '', '+1415' || lpad(g::text, 7, '0'), '', 'Ada', '', '',
                (ARRAY['Asia/Jakarta','Europe/Paris','UTC','America/New_York'])[1 + g %% 4],
                '', jsonb_build_object('plan', (ARRAY['pro','team','free'])[1 + g %% 3]),
                'api', false, g %% 50 = 0, false, false, now(), now()
            FROM generate_series(1, %s) g
            """,
            [CONTACTS],
        )
        cur.execute("SELECT min(id), max(id) FROM messaging_contact")
        first, last = cur.fetchone()
        cur.execute(
            """
            INSERT INTO messaging_consent (contact_id, channel, status, source, changed_at)
            SELECT id, 'sms', CASE WHEN id % 5 = 0 THEN 'unsubscribed' ELSE 'subscribed' END,
                'api', now()
            FROM messaging_contact WHERE id % 3 <> 0
            """
        )
        cur.execute(
            """
            INSERT INTO journeys_event (name, contact_id, properties, occurred_at, received_at,
                source, request_fingerprint, result, processed_at)
            SELECT (ARRAY['order.completed','cart.updated','page.viewed'])[1 + g %% 3],
                %s + (g::bigint * 7919) %% (%s + 1), jsonb_build_object('total', g %% 250),
                now() - ((g %% 200) || ' days')::interval, now(), 'api', '', '{}', now()
            FROM generate_series(1, %s) g
            """,
            [first, last - first, EVENTS],
        )
        for table in ("messaging_contact", "messaging_consent", "journeys_event"):
            cur.execute(f"VACUUM ANALYZE {table}")


def main() -> None:
    c.django_setup(DJANGO_SETTINGS_MODULE="bench.settings")
    c.header(
        "7. Segment count",
        contacts=f"{CONTACTS:,}",
        events=f"{EVENTS:,}",
        counts=f"{REPEATS} per side per run (after a warm-up)",
    )
    with c.bench_services():
        import time

        from django.utils import timezone

        from audiences.services import segment_count, segment_create

        seconds, _ = c.timed(build)
        print(f"    built in {seconds:.1f} s", flush=True)
        segment = segment_create(
            name="Jakarta repeat buyers", slug="bench", kind="dynamic", definition=DEFINITION
        )
        now = timezone.now()
        since = now - dt.timedelta(days=90)
        bare_conn = c.pg_connect()
        bare_conn.autocommit = True

        def product() -> int:
            return segment_count(segment=segment, now=now)

        def bare() -> int:
            with bare_conn.cursor() as cur:
                cur.execute(BARE, (since,))
                return cur.fetchone()[0]

        expected = bare()
        got = product()
        assert got == expected, f"segment_count {got} != hand-written SQL {expected}"
        print(f"    both count {got:,} contacts", flush=True)

        def ms_per_count(fn) -> float:
            started = time.perf_counter()
            for _ in range(REPEATS):
                fn()
            return (time.perf_counter() - started) * 1000 / REPEATS

        product_ms, bare_ms = [], []
        for _ in range(c.RUNS):
            bare_ms.append(ms_per_count(bare))
            product_ms.append(ms_per_count(product))
        bare_conn.close()
        c.report(
            c.Figure(
                "segment_count",
                "segment_count (compiled definition)",
                "ms",
                product_ms,
                "hand-written SQL count",
                bare_ms,
                goal="<= 2",
                higher_is_better=False,
                notes={"members": got},
            )
        )


if __name__ == "__main__":
    main()
