"""The dispatcher: each beat tick starts due scheduled broadcasts, ends those whose send
window closed, claims due recipients of sending broadcasts (SKIP LOCKED, within the throttle)
and completes broadcasts with nobody left to send."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..models import Broadcast, BroadcastRecipient
from ..status import UNSENT
from .lifecycle import broadcasts_start_due
from .sql import recipients_touch

R = BroadcastRecipient.State
S = Broadcast.Status
WINDOW_ENDED = "send window ended"
CATCH_UP_TICKS = 5


def throttle_grant(
    *, per_minute: int, tat: dt.datetime | None, now: dt.datetime, limit: int
) -> tuple[int, dt.datetime]:
    """The token bucket (GCRA): how many sends may be claimed now, and the bucket's start
    from which the claimed ones are counted (`start + claimed * interval` is the new tat).

    The theoretical arrival time `tat` advances one interval per claimed recipient; every
    slot at or before `now` may be claimed. A late tick (the beat task waited in the queue
    behind deliveries) catches up what it missed, for at most CATCH_UP_TICKS ticks' worth,
    so an idle spell (everyone held, nothing due) never becomes more than a small burst:
    over minutes the claims hold the configured rate."""
    interval = dt.timedelta(seconds=60.0 / per_minute)
    catch_up = dt.timedelta(seconds=settings.BROADCAST_DISPATCH_INTERVAL_SECONDS * CATCH_UP_TICKS)
    start = now if tat is None else max(tat, now - catch_up)
    if start > now:
        return 0, start
    slots = math.floor((now - start) / interval) + 1
    return min(slots, limit), start


def recipients_claim(
    *, broadcast_id: int, now: dt.datetime, limit: int, lease_seconds: int
) -> list[int]:
    """Claim up to `limit` due recipients of a sending broadcast, within its throttle: lock
    the broadcast row (SKIP LOCKED: a concurrent tick leaves it to this one), take the rows
    with SELECT … FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite has one writer) and push their
    send_after out by a lease (a worker that dies leaves them claimable again after it). The
    throttle's tokens are spent in the same transaction as the claim."""
    with transaction.atomic():
        broadcast = (
            Broadcast.objects.select_for_update(skip_locked=True)
            .filter(pk=broadcast_id, status=S.SENDING)
            .only("pk", "throttle_per_minute", "throttle_tat")
            .first()
        )
        if broadcast is None:
            return []
        start = None
        if broadcast.throttle_per_minute:
            limit, start = throttle_grant(
                per_minute=broadcast.throttle_per_minute,
                tat=broadcast.throttle_tat,
                now=now,
                limit=limit,
            )
            if limit == 0:
                return []
        ids = list(
            BroadcastRecipient.objects.select_for_update(skip_locked=True)
            .filter(broadcast_id=broadcast_id, state__in=(R.PENDING, R.HELD), send_after__lte=now)
            .order_by("send_after", "id")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            BroadcastRecipient.objects.filter(pk__in=ids).update(
                send_after=now + dt.timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            if start is not None:
                interval = dt.timedelta(seconds=60.0 / broadcast.throttle_per_minute)
                Broadcast.objects.filter(pk=broadcast_id).update(
                    throttle_tat=start + len(ids) * interval
                )
    return ids


def broadcast_end_window(*, broadcast: Broadcast, now: dt.datetime) -> int:
    """After end_at: every recipient not sent yet is skipped ("send window ended", a
    touchpoint each, set-based), and the broadcast completes. Returns how many."""
    with transaction.atomic():
        locked = (
            Broadcast.objects.select_for_update()
            .filter(pk=broadcast.pk, status__in=(S.SCHEDULED, S.SENDING))
            .first()
        )
        if locked is None:
            return 0
        skipped = BroadcastRecipient.objects.filter(broadcast=locked, state__in=UNSENT).update(
            state=R.SKIPPED, reason=WINDOW_ENDED, updated_at=now
        )
        if skipped:
            recipients_touch(
                broadcast=locked,
                kind="broadcast_skipped",
                state=R.SKIPPED,
                reason=WINDOW_ENDED,
                now=now,
            )
        Broadcast.objects.filter(pk=locked.pk).update(
            status=S.COMPLETED, completed_at=now, updated_at=now
        )
    return skipped


def broadcasts_complete(*, now: dt.datetime) -> int:
    """Sending broadcasts with no pending, held or awaiting-the-winner recipient left are
    completed (one UPDATE; claimed recipients are pending until sent, so a batch in flight
    keeps it open)."""
    left = BroadcastRecipient.objects.filter(broadcast=OuterRef("pk"), state__in=UNSENT)
    return (
        Broadcast.objects.filter(status=S.SENDING)
        .exclude(Exists(left))
        .update(status=S.COMPLETED, completed_at=now, updated_at=now)
    )


@dataclass
class Claim:
    broadcast_id: int
    recipient_ids: list[int]
    full: bool  # as many as asked for: more may be due (an unthrottled backlog)


def broadcasts_dispatch(
    *, now: dt.datetime | None = None, limit: int | None = None, lease_seconds: int | None = None
) -> list[Claim]:
    """One tick: start due scheduled broadcasts, end expired windows, claim due recipients
    of every sending broadcast (a few queries per broadcast, none per recipient) and complete
    finished broadcasts. The caller sends the claims (recipients_send)."""
    now = now or timezone.now()
    limit = limit or settings.BROADCAST_BATCH_SIZE
    lease_seconds = lease_seconds or settings.BROADCAST_LEASE_SECONDS
    # A window can close before a scheduled broadcast's first recipient was due (local
    # time: the audience's zones all come later than the one the launch checked against).
    ended = Broadcast.objects.filter(status__in=(S.SCHEDULED, S.SENDING), end_at__lte=now)
    for broadcast in ended.only("pk", "slug", "name"):
        broadcast_end_window(broadcast=broadcast, now=now)
    broadcasts_start_due(now=now)
    claims = []
    sending = Broadcast.objects.filter(status=S.SENDING).only("pk", "end_at")
    for broadcast in sending:
        if broadcast.end_at is not None and broadcast.end_at <= now:
            continue  # ended just now, by another tick
        ids = recipients_claim(
            broadcast_id=broadcast.pk, now=now, limit=limit, lease_seconds=lease_seconds
        )
        if ids:
            claims.append(Claim(broadcast.pk, ids, full=len(ids) == limit))
    broadcasts_complete(now=now)
    return claims


def run_due(*, now: dt.datetime | None = None, limit: int | None = None) -> int:
    """Choose due winners, claim and send everything due, inline (tests, demos). Returns how
    many were claimed."""
    from .sending import recipients_send
    from .winner import broadcasts_choose_winners

    broadcasts_choose_winners(now=now)
    claims = broadcasts_dispatch(now=now, limit=limit)
    for claim in claims:
        recipients_send(recipient_ids=claim.recipient_ids, now=now)
    if claims:
        broadcasts_complete(now=now or timezone.now())
    return sum(len(c.recipient_ids) for c in claims)
