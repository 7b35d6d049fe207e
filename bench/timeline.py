"""5. Timeline: p50/p95 latency of a contact's first timeline page
(GET /api/v1/contacts/{external_id}/touchpoints/, 50 rows, newest first) with 5M touchpoints
in the table and 10k of them on that contact at full scale (built with INSERT ... SELECT
generate_series), in-process through DRF's test client.

Baseline: the bare indexed SQL query for the same rows (psycopg, same columns, ORDER BY
occurred_at DESC, id DESC LIMIT 51, as the cursor paginator asks), timed the same way.
Also shown for attribution: the page's own work (the query and the serialised rows, as the view
does them) without HTTP, auth or throttle; and the floor of any API read: an authenticated
no-op GET (bench/urls.py) through the same client, API key, scope check and throttle.

Goal: API p50 and p95 <= 2x the bare query's.
"""

from __future__ import annotations

import time

from bench import common as c

TOTAL = c.scaled(5_000_000, 200_000)
ON_CONTACT = c.scaled(10_000, 2000)
CONTACTS = max(100, TOTAL // 50)  # the rest spread over many contacts, 50 each
REQUESTS = 300  # per run
BARE = """
SELECT id, contact_id, kind, channel, direction, message_id, occurred_at, data
FROM messaging_touchpoint WHERE contact_id = %s ORDER BY occurred_at DESC, id DESC LIMIT 51
"""


def build() -> int:
    """Contacts and touchpoints in SQL; returns the target contact's id."""
    from django.db import connection

    others = TOTAL - ON_CONTACT
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO messaging_contact (external_id, email, phone, whatsapp, first_name,
                last_name, locale, timezone, preferred_channel, attributes, created_via,
                email_undeliverable, phone_invalid, whatsapp_invalid, created_at, updated_at)
            SELECT 'tl-' || g, '', '', '', 'Ada', '', '', 'UTC', '', '{}', 'api', false, false,
                false, now(), now()
            FROM generate_series(0, %s) g
            """,
            [CONTACTS],
        )
        cur.execute("SELECT min(id), max(id) FROM messaging_contact")
        first, last = cur.fetchone()
        target = last
        kinds = "(ARRAY['queued','sending','sent','delivered','event','replied'])"
        columns = """(contact_id, channel, direction, kind, message_id, occurred_at, data,
            dedupe_key, actor_id, created_at)"""
        cur.execute(
            f"""
            INSERT INTO messaging_touchpoint {columns}
            SELECT %s + (g %% %s), 'sms', 'outbound', {kinds}[1 + g %% 6], NULL,
                now() - (g || ' seconds')::interval, jsonb_build_object('n', g),
                'bench:' || g, NULL, now()
            FROM generate_series(1, %s) g
            """,  # noqa: S608 (constants only)
            [first, last - first, others],
        )
        cur.execute(
            f"""
            INSERT INTO messaging_touchpoint {columns}
            SELECT %s, 'sms', 'outbound', {kinds}[1 + g %% 6], NULL,
                now() - (g * 7 || ' seconds')::interval, jsonb_build_object('n', g),
                'bench:target:' || g, NULL, now()
            FROM generate_series(1, %s) g
            """,  # noqa: S608 (constants only)
            [target, ON_CONTACT],
        )
        cur.execute("VACUUM ANALYZE messaging_touchpoint")
        cur.execute("VACUUM ANALYZE messaging_contact")
    return target


def timings(fn, n: int) -> list[float]:
    for _ in range(20):  # warm-up
        fn()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    c.django_setup(DJANGO_SETTINGS_MODULE="bench.settings")
    c.header(
        "5. Timeline",
        touchpoints=f"{TOTAL:,} in the table, {ON_CONTACT:,} on the contact",
        requests=f"{REQUESTS} per run (after 20 warm-up)",
    )
    with c.bench_services():
        from django.db import connection
        from rest_framework.test import APIClient

        from messaging import selectors
        from messaging.api.touchpoints import TIMELINE_COLUMNS, timeline_rows
        from messaging.api_auth import ALL_SCOPES
        from messaging.models import ApiKey, Contact

        seconds, target = c.timed(build)
        print(f"    built in {seconds:.1f} s", flush=True)
        contact = Contact.objects.get(pk=target)
        _, key = ApiKey.objects.create_key(name="bench", scopes=list(ALL_SCOPES))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        path = f"/api/v1/contacts/{contact.external_id}/touchpoints/"

        def api():
            response = client.get(path)
            assert response.status_code == 200 and len(response.json()["results"]) == 50

        def selector():
            qs = selectors.contact_timeline(contact_id=contact.pk)
            rows = list(qs.values(*TIMELINE_COLUMNS)[:51])
            return timeline_rows(rows[:50], contact.external_id)

        def floor():
            assert client.get("/bench/auth-noop/").status_code == 200

        bare_conn = c.pg_connect()
        bare_conn.autocommit = True

        def bare():
            with bare_conn.cursor() as cur:
                cur.execute(BARE, (target,))
                assert len(cur.fetchall()) == 51

        with connection.cursor() as cur:
            cur.execute("EXPLAIN " + BARE, [target])
            plan = " / ".join(row[0].strip() for row in cur.fetchall()[:2])
        api_p, sel_p, bare_p, floor_p = ({50: [], 95: []} for _ in range(4))
        for _ in range(c.RUNS):
            for store, fn in ((bare_p, bare), (api_p, api), (sel_p, selector), (floor_p, floor)):
                ms = timings(fn, REQUESTS)
                for pct in (50, 95):
                    store[pct].append(c.percentile(ms, pct))
        bare_conn.close()
        for pct in (50, 95):
            c.report(
                c.Figure(
                    "timeline",
                    f"GET .../touchpoints/ first page p{pct}",
                    "ms",
                    api_p[pct],
                    f"bare indexed SQL p{pct}",
                    bare_p[pct],
                    goal="<= 2",
                    higher_is_better=False,
                    notes={"bare plan": plan} if pct == 50 else {},
                )
            )
            c.report(
                c.Figure(
                    "timeline",
                    f"page query + serialised rows (no HTTP/auth) p{pct}",
                    "ms",
                    sel_p[pct],
                    f"bare indexed SQL p{pct}",
                    bare_p[pct],
                    higher_is_better=False,
                )
            )
            c.report(
                c.Figure(
                    "timeline",
                    f"floor: authenticated no-op GET, same client p{pct}",
                    "ms",
                    floor_p[pct],
                    f"bare indexed SQL p{pct}",
                    bare_p[pct],
                    higher_is_better=False,
                )
            )


if __name__ == "__main__":
    main()
