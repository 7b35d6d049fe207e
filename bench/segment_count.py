"""7. Segment count: `segment_count` (the definition compiled by the ORM into one query) vs a
hand-written SQL count of the same condition, on N contacts and M events (plus messages and
open touchpoints) built with INSERT ... SELECT generate_series.

Cases (each: both counts must agree, then both sides run alternately on the same warm
database, several times per run):
- `example`: issue 13's example (Jakarta, pro/team plan, marketing-SMS reachable, >= 2 orders
  of >= 100 in the last 90 days);
- `event_count`: >= 2 `order.completed` with total >= 100 in the last 90 days;
- `attribute`: plan in (pro, team);
- `engagement`: opened a message of template `bench-news` in the last 30 days;
- `received_7d`: received any message in the last 7 days (the partial index on the sent time);
- `abandoned_cart`: a `cart.updated` in the last 7 days not followed by an `order.completed`
  of the same `cart_id` within 24 hours.

Sizes: BENCH_SEGMENT_CONTACTS (default 1,000,000 x BENCH_SCALE, at least 20,000; the issue's
size is BENCH_SCALE=1 or BENCH_SEGMENT_CONTACTS=1000000) and
BENCH_SEGMENT_EVENTS (default 10 per contact). Goal (issue 13): <= 2x the hand-written SQL.
"""

from __future__ import annotations

import datetime as dt
import os

from bench import common as c

CONTACTS = int(os.environ.get("BENCH_SEGMENT_CONTACTS", str(c.scaled(1_000_000, 20_000))))
EVENTS = int(os.environ.get("BENCH_SEGMENT_EVENTS", str(CONTACTS * 10)))
REPEATS = int(os.environ.get("BENCH_SEGMENT_REPEATS", "3"))  # per side per run, after a warm-up
ORDERS = {
    "event": "order.completed",
    "count": {"gte": 2},
    "within_days": 90,
    "where": [{"property": "total", "op": "gte", "value": 100}],
}
PLAN = {"attribute": "plan", "op": "in", "value": ["pro", "team"]}
# What a developer would write by hand for the same audiences. %(d90)s etc.: now - N days.
BARE_ORDERS = """(SELECT count(*) FROM journeys_event e WHERE e.contact_id = c.id
       AND e.name = 'order.completed' AND e.occurred_at >= %(d90)s
       AND jsonb_typeof(e.properties -> 'total') = 'number'
       AND (e.properties ->> 'total')::numeric >= 100) >= 2"""
BARE_PLAN = "c.attributes -> 'plan' IN ('\"pro\"'::jsonb, '\"team\"'::jsonb)"
CASES = {
    "example": (
        {
            "all": [
                {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"},
                PLAN,
                {"reachable": "sms"},
                ORDERS,
            ]
        },
        f"""c.timezone = 'Asia/Jakarta' AND {BARE_PLAN}
  AND c.phone <> '' AND NOT c.phone_invalid
  AND EXISTS (SELECT 1 FROM messaging_consent s WHERE s.contact_id = c.id
              AND s.channel = 'sms' AND s.status = 'subscribed')
  AND {BARE_ORDERS}""",  # noqa: S608 (constants)
    ),
    "event_count": (ORDERS, BARE_ORDERS),
    "attribute": (PLAN, BARE_PLAN),
    "engagement": (
        {"engagement": "opened", "template": "bench-news", "within_days": 30},
        """EXISTS (SELECT 1 FROM messaging_touchpoint t
        JOIN messaging_message m ON m.id = t.message_id
        JOIN messaging_template tpl ON tpl.id = m.template_id
        WHERE m.contact_id = c.id AND m.direction = 'outbound' AND tpl.slug = 'bench-news'
          AND t.kind = 'opened' AND t.occurred_at >= %(d30)s)""",
    ),
    "received_7d": (
        {"engagement": "received", "within_days": 7},
        """EXISTS (SELECT 1 FROM messaging_message m WHERE m.contact_id = c.id
        AND m.direction = 'outbound' AND m.status IN ('sent', 'delivered', 'read')
        AND COALESCE(m.sent_at, m.delivered_at, m.read_at) >= %(d7)s)""",
    ),
    "abandoned_cart": (
        {
            "event": "cart.updated",
            "within_days": 7,
            "not_followed_by": {
                "event": "order.completed",
                "match": {"cart_id": "trigger.cart_id"},
                "within_hours": 24,
            },
        },
        """EXISTS (SELECT 1 FROM journeys_event a WHERE a.contact_id = c.id
        AND a.name = 'cart.updated' AND a.occurred_at >= %(d7)s
        AND a.occurred_at <= %(d1)s AND a.properties ? 'cart_id'
        AND NOT EXISTS (SELECT 1 FROM journeys_event o WHERE o.contact_id = a.contact_id
            AND o.name = 'order.completed' AND o.occurred_at >= a.occurred_at
            AND o.occurred_at < a.occurred_at + interval '24 hours'
            AND o.properties -> 'cart_id' = a.properties -> 'cart_id'))""",
    ),
}


BULK_TABLES = ["journeys_event", "messaging_message", "messaging_touchpoint"]


def _drop_secondary_indexes(cur) -> list[str]:
    """Drop the big tables' plain indexes (constraints stay) and return their definitions:
    building an index once after the load is several times faster than growing it row by
    row. The queries then run on exactly the migrated indexes."""
    cur.execute(
        """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename = ANY(%s)
          AND indexname NOT IN (SELECT conname FROM pg_constraint)
        """,
        [BULK_TABLES],
    )
    found = cur.fetchall()
    for name, _ in found:
        cur.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def build() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        indexes = _drop_secondary_indexes(cur)
        cur.execute(
            """
            INSERT INTO messaging_contact (external_id, email, phone, whatsapp, first_name,
                last_name, locale, timezone, preferred_channel, attributes, created_via,
                email_undeliverable, phone_invalid, whatsapp_invalid, is_test, created_at,
                updated_at)
            SELECT 'sc-' || g, 'sc' || g || '@example.com', '+1415' || lpad(g::text, 7, '0'),
                '', 'Ada', '', '',
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
        # Orders, carts and page views. An order (g = 3i) belongs to the cart g - 2 (same
        # contact, same cart_id) and comes 0-40 hours after it: within 24 hours for 5 in 9.
        cur.execute(
            """
            INSERT INTO journeys_event (name, contact_id, properties, occurred_at, received_at,
                source, request_fingerprint, result, processed_at)
            SELECT (ARRAY['order.completed','cart.updated','page.viewed'])[1 + g %% 3],
                %s + (k * 7919) %% (%s + 1),
                jsonb_build_object('total', g %% 250, 'cart_id', 'cart-' || k),
                now() - ((k %% 200) || ' days')::interval
                    + CASE WHEN g %% 3 = 0 THEN ((g %% 9) * 5 || ' hours')::interval
                           ELSE interval '0' END,
                now(), 'api', '', '{}', now()
            FROM (SELECT g, CASE WHEN g %% 3 = 0 THEN g - 2 ELSE g END AS k
                  FROM generate_series(1, %s::bigint) g) s
            """,
            [first, last - first, EVENTS],
        )
        cur.execute(
            """
            INSERT INTO messaging_template (slug, channel, name, description, subject, body,
                html_body, content_sid, content_variables, created_at, updated_at)
            VALUES ('bench-news', 'email', 'News', '', 'News', 'Hi', '', '', '{}', now(), now()),
                   ('bench-other', 'email', 'Other', '', 'Other', 'Hi', '', '', '{}', now(), now())
            """
        )
        # One email per contact: news for two in three, sent over the last 60 days; a third
        # of them delivered and opened.
        cur.execute(
            """
            INSERT INTO messaging_message (id, direction, channel, contact_id, template_id,
                to_address, from_address, subject, body, html_body, content_sid,
                content_variables, media, status, provider, provider_message_id, error_code,
                error_message, attempts, delivery_tries, request_fingerprint, source, category,
                metadata, created_at, updated_at, sent_at, delivered_at)
            SELECT gen_random_uuid(), 'outbound', 'email', c.id,
                (SELECT id FROM messaging_template
                 WHERE slug = CASE WHEN c.id % 3 = 0 THEN 'bench-other' ELSE 'bench-news' END),
                c.email, '', 'News', 'Hi', '', '', '{}', '[]',
                CASE WHEN c.id % 7 = 0 THEN 'failed' ELSE 'delivered' END, 'sendgrid', '',
                '', '', 1, 1, '', 'bench', 'marketing', '{}',
                now() - ((c.id % 60) || ' days')::interval,
                now() - ((c.id % 60) || ' days')::interval,
                now() - ((c.id % 60) || ' days')::interval,
                now() - ((c.id % 60) || ' days')::interval
            FROM messaging_contact c
            """
        )
        cur.execute(
            """
            INSERT INTO messaging_touchpoint (contact_id, channel, direction, kind, message_id,
                occurred_at, data, dedupe_key, created_at)
            SELECT m.contact_id, 'email', 'inbound', 'opened', m.id,
                m.sent_at + interval '2 hours', '{}', 'bench-open-' || m.id, now()
            FROM messaging_message m WHERE m.status = 'delivered' AND m.contact_id % 3 <> 1
            """
        )
        for definition in indexes:
            cur.execute(definition)
        for table in (
            "messaging_contact",
            "messaging_consent",
            "journeys_event",
            "messaging_template",
            "messaging_message",
            "messaging_touchpoint",
        ):
            cur.execute(f"VACUUM ANALYZE {table}")


def main() -> None:
    c.django_setup(DJANGO_SETTINGS_MODULE="bench.settings")
    c.header(
        "7. Segment count",
        contacts=f"{CONTACTS:,}",
        events=f"{EVENTS:,}",
        messages=f"{CONTACTS:,} (one email each), opens for about 4 in 7",
        counts=f"{REPEATS} per side per run (after a warm-up)",
    )
    with c.bench_services():
        import time

        from django.utils import timezone

        from audiences.services import segment_count, segment_create

        seconds, _ = c.timed(build)
        print(f"    built in {seconds:.1f} s", flush=True)
        now = timezone.now()
        ago = {f"d{n}": now - dt.timedelta(days=n) for n in (1, 7, 30, 90)}
        bare_conn = c.pg_connect()
        bare_conn.autocommit = True

        def ms_per_count(fn) -> float:
            started = time.perf_counter()
            for _ in range(REPEATS):
                fn()
            return (time.perf_counter() - started) * 1000 / REPEATS

        for name, (definition, where) in CASES.items():
            segment = segment_create(
                name=name,
                slug=f"bench-{name}".replace("_", "-"),
                kind="dynamic",
                definition=definition,
            )
            sql = f"SELECT count(*) FROM messaging_contact c WHERE c.erased_at IS NULL AND {where}"  # noqa: S608

            def product(segment=segment) -> int:
                return segment_count(segment=segment, now=now)

            def bare(sql=sql) -> int:
                with bare_conn.cursor() as cur:
                    cur.execute(sql, ago)
                    return cur.fetchone()[0]

            expected = bare()
            got = product()
            assert got == expected, f"{name}: segment_count {got} != hand-written SQL {expected}"
            print(f"    {name}: both count {got:,} contacts", flush=True)
            product_ms, bare_ms = [], []
            for _ in range(c.RUNS):
                bare_ms.append(ms_per_count(bare))
                product_ms.append(ms_per_count(product))
            c.report(
                c.Figure(
                    "segment_count",
                    f"segment_count {name}",
                    "ms",
                    product_ms,
                    "hand-written SQL count",
                    bare_ms,
                    goal="<= 2",
                    higher_is_better=False,
                    notes={"members": got},
                )
            )
        bare_conn.close()


if __name__ == "__main__":
    main()
