"""Freezing a broadcast's audience into recipient rows: one INSERT … SELECT, whatever the
audience's size, with each recipient's send time computed in SQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from audiences.models import Segment
from audiences.services import segment_members
from messaging.models import Contact

from ..models import Broadcast, BroadcastRecipient
from . import split
from .sql import db_datetime, recipients_touch, table

R = BroadcastRecipient.State
LOCAL_TIME_PASSED = "the local send time had already passed at launch"


def audience_queryset(
    *, segments: list[Segment], excluded: list[Segment], now: dt.datetime
) -> QuerySet[Contact]:
    """Contacts in any of `segments` and in none of `excluded`; erased contacts never (each
    segment's members already leave them out). One query, evaluated where it is used."""
    if len(segments) == 1:
        contacts = segment_members(segment=segments[0], now=now)
    else:
        include = Q()
        for segment in segments:
            include |= Q(pk__in=segment_members(segment=segment, now=now).values("pk"))
        contacts = Contact.objects.filter(erased_at__isnull=True).filter(include)
    for segment in excluded:
        contacts = contacts.exclude(pk__in=segment_members(segment=segment, now=now).values("pk"))
    return contacts.order_by()


def zone_of(name: str) -> ZoneInfo:
    """As the send policies read a contact's zone: an unknown name is UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def local_instant(day: dt.date, at: dt.time, zone: str) -> dt.datetime:
    """`day` `at` o'clock on the wall clock of `zone`, in UTC. Computed with zoneinfo, like
    quiet hours, so both agree (a time inside a spring-forward gap takes the offset before
    the change, as Python's fold=0 does)."""
    return dt.datetime.combine(day, at, tzinfo=zone_of(zone)).astimezone(dt.UTC)


def local_late_grace() -> dt.timedelta:
    return dt.timedelta(minutes=settings.BROADCAST_LOCAL_LATE_GRACE_MINUTES)


@dataclass(frozen=True)
class Frozen:
    recipients: int  # rows inserted (every recipient, skipped ones included)
    skipped_late: int  # local mode: zones whose send time had passed at launch
    first_send: dt.datetime | None  # the earliest send time of a recipient still to send


def _local_schedule(
    broadcast: Broadcast, audience: QuerySet[Contact], now: dt.datetime
) -> dict[str, tuple[dt.datetime, bool]]:
    """Per distinct time zone of the audience (one query; a few hundred zones at most, never
    one row per contact): its send time and whether that is too late (passed by more than the
    grace at launch: those recipients are skipped, not messaged at the wrong hour)."""
    zones = audience.values_list("timezone", flat=True).distinct()
    schedule = {}
    for zone in zones:
        at = local_instant(broadcast.local_send_date, broadcast.local_send_time, zone)
        schedule[zone] = (max(at, now), at < now - local_late_grace())
    return schedule


def recipients_freeze(
    *, broadcast: Broadcast, segments: list[Segment], excluded: list[Segment], now: dt.datetime
) -> Frozen:
    """Insert one recipient row per audience contact in one INSERT … SELECT … ON CONFLICT DO
    NOTHING (a contact in two segments, or a second freeze, meets the unique constraint).

    send_after: `now`, `send_at`, or in local mode a CASE over the contact's time zone whose
    branches were computed per zone in Python (the same statement on PostgreSQL and SQLite,
    and the same zone database the quiet hours use; a zone name PostgreSQL does not know
    cannot fail the launch)."""
    audience = audience_queryset(segments=segments, excluded=excluded, now=now)
    members_sql, members_params = audience.values("id", "timezone").query.sql_with_params()
    params: list = [broadcast.pk]
    late = 0
    first_send: dt.datetime | None
    if broadcast.send_mode == Broadcast.SendMode.LOCAL:
        schedule = _local_schedule(broadcast, audience, now)
        default_at = local_instant(broadcast.local_send_date, broadcast.local_send_time, "UTC")
        default = (max(default_at, now), default_at < now - local_late_grace())
        late_zones = [zone for zone, (_, too_late) in schedule.items() if too_late]

        def case(zones: list[str], value, default_value) -> tuple[str, list]:
            """CASE m.timezone WHEN zone THEN value(zone) … ELSE default END, and its params."""
            if not zones:
                return "%s", [default_value]
            whens = " ".join('WHEN m."timezone" = %s THEN %s' for _ in zones)
            return f"CASE {whens} ELSE %s END", [
                *(p for zone in zones for p in (zone, value(zone))),
                default_value,
            ]

        state_sql, state_params = case(
            late_zones,
            lambda _: R.SKIPPED.value,
            R.SKIPPED.value if default[1] else R.PENDING.value,
        )
        at_sql, at_params = case(
            list(schedule), lambda zone: db_datetime(schedule[zone][0]), db_datetime(default[0])
        )
        reason_sql, reason_params = case(
            late_zones, lambda _: LOCAL_TIME_PASSED, LOCAL_TIME_PASSED if default[1] else ""
        )
        late = len(late_zones)
        pending = [at for at, too_late in schedule.values() if not too_late]
        first_send = min(pending) if pending else None
    else:
        state_sql, at_sql, reason_sql = "%s", "%s", "%s"
        start = broadcast.send_at if broadcast.send_mode == Broadcast.SendMode.AT else now
        start = max(start, now)
        state_params, at_params, reason_params = [R.PENDING.value], [db_datetime(start)], [""]
        first_send = start
    # Experiments: the control group, the variants and who awaits the winner, by a hash
    # bucket per contact (campaigns.services.split), in the same statement.
    variant_sql, variant_params = "%s", [""]
    members = f"({members_sql}) AS m"
    if split.has_experiment(broadcast):
        p, bucket = split.plan(broadcast), "m.bucket"
        state_sql, state_params = split.state_case(p, bucket, state_sql, state_params)
        reason_sql, reason_params = split.reason_case(p, bucket, reason_sql, reason_params)
        variant_sql, variant_params = split.variant_case(p, bucket)
        hashed = split.bucket_sql("m0.id", broadcast.pk)
        members = (
            f'(SELECT m0.id, m0."timezone", {hashed} AS bucket '  # noqa: S608 (ints, Django's SQL)
            f"FROM ({members_sql}) AS m0) AS m"
        )
    params += [
        *state_params,
        *at_params,
        *reason_params,
        *variant_params,
        db_datetime(now),
        *members_params,
    ]
    sql = (
        f"INSERT INTO {table(BroadcastRecipient)} "  # noqa: S608 (names and Django's own SQL)
        f"(broadcast_id, contact_id, state, send_after, reason, variant, channel, attempts, "
        f"updated_at) "
        f"SELECT %s, m.id, {state_sql}, {at_sql}, {reason_sql}, {variant_sql}, '', 0, %s "
        f"FROM {members} WHERE 1 = 1 "  # WHERE: SQLite's INSERT…SELECT…ON CONFLICT
        f"ON CONFLICT (broadcast_id, contact_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount
    skipped = 0
    if late:
        skipped = recipients_touch(
            broadcast=broadcast,
            kind="broadcast_skipped",
            state=R.SKIPPED,
            reason=LOCAL_TIME_PASSED,
            now=now,
        )
    if skipped == inserted:
        first_send = None
    return Frozen(recipients=inserted, skipped_late=skipped, first_send=first_send)
