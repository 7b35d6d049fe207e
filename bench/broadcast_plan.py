"""7. Broadcast planning: freezing the audience into recipient rows at launch.

N contacts (100k at full scale; BENCH_BROADCAST_PLAN_N overrides) in 24 time zones. Measured,
each run on a fresh draft with the recipient table emptied first:

- "now", one dynamic segment (everyone whose phone is set): `broadcast_launch`, all of it
  (lock, validation, the INSERT … SELECT … ON CONFLICT DO NOTHING, the status, the audit);
- "local time", two overlapping dynamic segments minus an exclusion segment, send time at
  9:00 in each contact's zone (the CASE over the audience's distinct zones).

Baseline: a bare `INSERT INTO campaigns_broadcastrecipient … SELECT` of the same contact ids
(the same columns, constants for the rest) on one psycopg connection: for "now" selected from
the contact table with the segment's condition written by hand; for "local time" from a table
holding exactly the frozen ids (the cheapest possible source). Both write into the same table
with the same indexes (unique (broadcast, contact), the due index, state, contact).

Goal (issue 13): >= 0.5x the bare INSERT … SELECT.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time

from bench import common as c

N = int(os.environ.get("BENCH_BROADCAST_PLAN_N", str(c.scaled(100_000, 10_000))))
ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Jakarta",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Mexico_City",
    "Africa/Lagos",
    "Africa/Nairobi",
    "Asia/Manila",
    "Asia/Seoul",
    "Europe/Paris",
    "Europe/Madrid",
    "Pacific/Honolulu",
]
_slugs = itertools.count(1)

BARE_NOW = """
INSERT INTO campaigns_broadcastrecipient
    (broadcast_id, contact_id, state, send_after, reason, channel, attempts, updated_at)
SELECT %s, id, 'pending', now(), '', '', 0, now() FROM messaging_contact
WHERE erased_at IS NULL AND phone <> ''
"""
BARE_IDS = """
INSERT INTO campaigns_broadcastrecipient
    (broadcast_id, contact_id, state, send_after, reason, channel, attempts, updated_at)
SELECT %s, contact_id, 'pending', now(), '', '', 0, now() FROM bench_plan_ids
"""


def make_contacts() -> None:
    from messaging.models import Contact

    Contact.objects.bulk_create(
        [
            Contact(
                external_id=f"plan-{i}",
                phone=f"+1415{2000000 + i:07d}",
                email=f"plan{i}@example.com",
                first_name="Ada",
                timezone=ZONES[i % len(ZONES)],
            )
            for i in range(N)
        ],
        batch_size=5000,
    )
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE messaging_contact")


def setup():
    from audiences.services import segment_create
    from messaging.models import Template

    Template.objects.create(slug="plan", channel="sms", name="Plan", body="Hi!")
    phone = segment_create(
        name="Has a phone",
        slug="has-phone",
        kind="dynamic",
        definition={"field": "phone", "op": "exists"},
    )
    # Overlapping halves (ids ending 0-5 and 4-9 by external id), minus the Tokyo contacts.
    first = segment_create(
        name="First",
        slug="first",
        kind="dynamic",
        definition={"field": "timezone", "op": "in", "value": ZONES[:14]},
    )
    second = segment_create(
        name="Second",
        slug="second",
        kind="dynamic",
        definition={"field": "timezone", "op": "in", "value": ZONES[10:]},
    )
    tokyo = segment_create(
        name="Tokyo",
        slug="tokyo",
        kind="dynamic",
        definition={"field": "timezone", "op": "eq", "value": "Asia/Tokyo"},
    )
    return phone, first, second, tokyo


def empty_recipients() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE campaigns_broadcastrecipient")
        cur.execute("VACUUM ANALYZE campaigns_broadcastrecipient")


def draft(segments, exclude=(), **fields):
    from campaigns.models import Broadcast

    broadcast = Broadcast.objects.create(
        name="Plan",
        slug=f"plan-{next(_slugs)}",
        template_slug="plan",
        channel_order=["sms"],
        category="transactional",
        **fields,
    )
    broadcast.segments.set(segments)
    broadcast.exclude_segments.set(exclude)
    return broadcast


def product(segments, exclude=(), **fields) -> tuple[float, int]:
    from campaigns.services import broadcast_launch

    empty_recipients()
    broadcast = draft(segments, exclude, **fields)
    started = time.perf_counter()
    launched = broadcast_launch(broadcast=broadcast, actor="bench")
    seconds = time.perf_counter() - started
    return launched.recipient_count / seconds, launched.recipient_count


def bare(sql: str) -> tuple[float, int]:
    empty_recipients()
    broadcast = draft([])
    with c.pg_connect() as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(sql, (broadcast.pk,))
            rows = cur.rowcount
        conn.commit()
        seconds = time.perf_counter() - started
    return rows / seconds, rows


def main() -> None:
    c.django_setup()
    c.header(
        "7. Broadcast planning (freezing recipients)",
        contacts=N,
        zones=len(ZONES),
        local="9:00 tomorrow in each contact's zone; 2 overlapping segments minus 1",
    )
    with c.bench_services():
        make_contacts()
        phone, first, second, tokyo = setup()
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date()
        local = {
            "send_mode": "local",
            "local_send_date": tomorrow,
            "local_send_time": dt.time(9, 0),
        }
        now_runs, bare_now_runs, local_runs, bare_ids_runs = [], [], [], []
        counts = {}
        for _ in range(c.RUNS):
            rate, counts["now"] = product([phone])
            now_runs.append(rate)
            rate, counts["bare now"] = bare(BARE_NOW)
            bare_now_runs.append(rate)
            rate, counts["local"] = product([first, second], [tokyo], **local)
            local_runs.append(rate)
            # The same ids as the local freeze, in a table of their own.
            from django.db import connection

            with connection.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS bench_plan_ids")
                cur.execute(
                    "CREATE TABLE bench_plan_ids AS SELECT contact_id "
                    "FROM campaigns_broadcastrecipient"
                )
                cur.execute("ANALYZE bench_plan_ids")
            rate, counts["bare ids"] = bare(BARE_IDS)
            bare_ids_runs.append(rate)
        assert counts["now"] == counts["bare now"] == N, counts
        assert counts["local"] == counts["bare ids"], counts
        c.report(
            c.Figure(
                "broadcast_plan",
                "broadcast_launch, send now, 1 dynamic segment",
                "recipients/s",
                now_runs,
                "bare INSERT … SELECT from the contact table (same condition)",
                bare_now_runs,
                goal=">= 0.5",
                notes={"recipients": counts["now"]},
            )
        )
        c.report(
            c.Figure(
                "broadcast_plan",
                "broadcast_launch, local time, 2 overlapping segments minus 1",
                "recipients/s",
                local_runs,
                "bare INSERT … SELECT of the same ids from a table of them",
                bare_ids_runs,
                goal=">= 0.5",
                notes={"recipients": counts["local"]},
            )
        )


if __name__ == "__main__":
    main()
