"""Launch, pause, resume and cancel: the staff actions on a broadcast. Each locks the
broadcast row, moves it along campaigns.status.TRANSITIONS (anything else is a BroadcastError)
and writes one audit entry, in one transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import audit_record, audit_snapshot
from channels_app.channels import Channel
from messaging.models import Template, Topic

from ..errors import BroadcastError
from ..models import Broadcast, BroadcastRecipient
from ..status import UNSENT, can_transition
from .experiments import experiment_errors
from .freeze import local_instant, local_late_grace, recipients_freeze
from .split import tests_first

S = Broadcast.Status
R = BroadcastRecipient.State
PREFERRED = "preferred"
CANCELLED_REASON = "broadcast cancelled"
# The earliest and latest wall clocks on Earth (UTC+14, UTC-12): a local send time is in the
# past everywhere once it has passed at UTC-12.
EARLIEST_ZONE, LATEST_ZONE = "Etc/GMT-14", "Etc/GMT+12"
# A send time ("at a time") this far in the past still launches (sends at once): the
# confirmation step takes a moment.
AT_GRACE = dt.timedelta(minutes=5)


def _lock(broadcast: Broadcast) -> Broadcast:
    return Broadcast.objects.select_for_update().get(pk=broadcast.pk)


def _refuse(broadcast: Broadcast, action: str) -> BroadcastError:
    return BroadcastError(
        {"status": [f"A {broadcast.get_status_display().lower()} broadcast cannot be {action}."]}
    )


def _copy_state(source: Broadcast, target: Broadcast) -> None:
    """The caller's instance sees what was saved (no second read)."""
    for name in (
        "status",
        "launched_at",
        "launched_by_id",
        "paused_at",
        "cancelled_at",
        "completed_at",
        "recipient_count",
        "winner_due_at",
    ):
        setattr(target, name, getattr(source, name))


def _audit(actor: Any, action: str, broadcast: Broadcast, before: dict, **details: Any) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=broadcast,
        before=before,
        after=audit_snapshot(broadcast),
        details=details or None,
    )


def channel_order_errors(order: Any) -> list[str]:
    if not isinstance(order, list) or not order:
        return ['Give a list of channels, e.g. ["whatsapp", "sms", "email"].']
    unknown = [c for c in order if c != PREFERRED and c not in Channel.values]
    if unknown:
        allowed = ", ".join([*Channel.values, PREFERRED])
        return [f"Unknown channel(s): {', '.join(map(str, unknown))}. Allowed: {allowed}."]
    return []


def launch_errors(
    broadcast: Broadcast, *, has_segments: bool, now: dt.datetime
) -> dict[str, list[str]]:
    """Everything that stops a launch, by field (no audience query: that is the freeze)."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not has_segments:
        add("segments", "Choose at least one segment.")
    order_errors = channel_order_errors(broadcast.channel_order)
    for message in order_errors:
        add("channel_order", message)
    if not order_errors:
        order = broadcast.channel_order
        channels = list(Channel.values) if PREFERRED in order else list(order)
        if not broadcast.template_slug:
            add("template_slug", "Choose the message's template.")
        elif not Template.objects.filter(
            slug=broadcast.template_slug, channel__in=channels
        ).exists():
            add(
                "template_slug",
                f"No template {broadcast.template_slug!r} exists for any of the channels "
                f"{', '.join(channels)}.",
            )
    if (
        broadcast.topic_id
        and not Topic.objects.filter(pk=broadcast.topic_id, is_active=True).exists()
    ):
        # An inactive topic is not on the preference page: its recipients could not leave it.
        add(
            "topic",
            "That topic is inactive (hidden from the preference center): "
            "activate it or choose another.",
        )
    start = now
    mode = broadcast.send_mode
    if mode == Broadcast.SendMode.AT:
        if broadcast.send_at is None:
            add("send_at", "Give the send time.")
        elif broadcast.send_at < now - AT_GRACE:
            add("send_at", "The send time has passed.")
        else:
            start = max(broadcast.send_at, now)
    elif mode == Broadcast.SendMode.LOCAL:
        if broadcast.local_send_date is None:
            add("local_send_date", "Give the local send date.")
        if broadcast.local_send_time is None:
            add("local_send_time", "Give the local send time.")
        if broadcast.local_send_date and broadcast.local_send_time:
            day, at = broadcast.local_send_date, broadcast.local_send_time
            if local_instant(day, at, LATEST_ZONE) < now - local_late_grace():
                add("local_send_date", "That local time has already passed in every time zone.")
            start = max(local_instant(day, at, EARLIEST_ZONE), now)
    elif mode != Broadcast.SendMode.NOW:
        add("send_mode", f"Unknown send mode {mode!r}.")
    if broadcast.end_at is not None and broadcast.end_at <= start:
        add("end_at", "The end of the send window must be after the send time.")
    if broadcast.throttle_per_minute is not None and broadcast.throttle_per_minute < 1:
        add("throttle_per_minute", "At least 1 message per minute, or empty for no limit.")
    if broadcast.category not in Broadcast.Category.values:
        add("category", f"Unknown category {broadcast.category!r}.")
    for field, messages in experiment_errors(broadcast, start=start).items():
        for message in messages:
            add(field, message)
    return errors


@transaction.atomic
def broadcast_launch(
    *, broadcast: Broadcast, actor: Any, now: dt.datetime | None = None
) -> Broadcast:
    """Validate a draft, freeze its audience into recipient rows (one INSERT … SELECT), and
    make it scheduled (first send time ahead) or sending. BroadcastError with field errors
    otherwise; nothing is written then. A broadcast is launched (and frozen) once: anything
    but a draft is refused."""
    now = now or timezone.now()
    locked = _lock(broadcast)
    # Only a draft: a scheduled broadcast may move on to sending (the dispatcher does that),
    # but launching it again would freeze whoever joined its segments since.
    if locked.status != S.DRAFT or not can_transition(locked.status, S.SENDING):
        raise _refuse(locked, "launched")
    segments = list(locked.segments.all())
    excluded = list(locked.exclude_segments.all())
    errors = launch_errors(locked, has_segments=bool(segments), now=now)
    if errors:
        raise BroadcastError(errors)
    before = audit_snapshot(locked)
    frozen = recipients_freeze(broadcast=locked, segments=segments, excluded=excluded, now=now)
    if frozen.recipients == 0:
        raise BroadcastError(
            {
                "segments": [
                    "The audience is empty: no contact is in these segments (after the exclusions)."
                ]
            }
        )
    if frozen.first_send is None:
        raise BroadcastError(
            {"local_send_time": ["The local send time has already passed for every recipient."]}
        )
    if locked.end_at is not None and locked.end_at <= frozen.first_send:
        raise BroadcastError({"end_at": ["The send window ends before any recipient's send time."]})
    locked.status = S.SENDING if frozen.first_send <= now else S.SCHEDULED
    locked.launched_at = now
    locked.launched_by = actor if isinstance(actor, get_user_model()) else None
    locked.recipient_count = frozen.recipients
    locked.throttle_tat = None
    if tests_first(locked):  # the winner is chosen this long after the first send
        locked.winner_due_at = frozen.first_send + dt.timedelta(hours=locked.winner_after_hours)
    locked.save(
        update_fields=[
            "status",
            "launched_at",
            "launched_by",
            "recipient_count",
            "throttle_tat",
            "winner_due_at",
            "updated_at",
        ]
    )
    _audit(
        actor,
        "launch",
        locked,
        before,
        recipients=frozen.recipients,
        skipped_local_time_passed=frozen.skipped_late,
    )
    _copy_state(locked, broadcast)
    return locked


@transaction.atomic
def broadcast_pause(
    *, broadcast: Broadcast, actor: Any, now: dt.datetime | None = None
) -> Broadcast:
    """Stop claiming recipients; those already claimed finish (at most one batch)."""
    now = now or timezone.now()
    locked = _lock(broadcast)
    if not can_transition(locked.status, S.PAUSED):
        raise _refuse(locked, "paused")
    before = audit_snapshot(locked)
    locked.status, locked.paused_at = S.PAUSED, now
    locked.save(update_fields=["status", "paused_at", "updated_at"])
    _audit(actor, "pause", locked, before)
    _copy_state(locked, broadcast)
    return locked


def _due(broadcast: Broadcast, now: dt.datetime) -> bool:
    return BroadcastRecipient.objects.filter(
        broadcast=broadcast, state__in=(R.PENDING, R.HELD), send_after__lte=now
    ).exists()


@transaction.atomic
def broadcast_resume(
    *, broadcast: Broadcast, actor: Any, now: dt.datetime | None = None
) -> Broadcast:
    """Continue a paused broadcast with the recipients not sent yet (sending, or scheduled
    when none is due yet). Its throttle starts afresh."""
    now = now or timezone.now()
    locked = _lock(broadcast)
    if locked.status != S.PAUSED:
        raise _refuse(locked, "resumed")
    before = audit_snapshot(locked)
    locked.status = S.SENDING if _due(locked, now) else S.SCHEDULED
    locked.paused_at = None
    locked.throttle_tat = None
    locked.save(update_fields=["status", "paused_at", "throttle_tat", "updated_at"])
    _audit(actor, "resume", locked, before)
    _copy_state(locked, broadcast)
    return locked


@transaction.atomic
def broadcast_cancel(
    *, broadcast: Broadcast, actor: Any, now: dt.datetime | None = None
) -> Broadcast:
    """Stop for good: every recipient not sent yet (awaiting the winner included) becomes
    cancelled (one UPDATE, which waits
    for a batch being sent right now and leaves what it sent alone)."""
    now = now or timezone.now()
    locked = _lock(broadcast)
    if not can_transition(locked.status, S.CANCELLED):
        raise _refuse(locked, "cancelled")
    before = audit_snapshot(locked)
    cancelled = BroadcastRecipient.objects.filter(broadcast=locked, state__in=UNSENT).update(
        state=R.CANCELLED, reason=CANCELLED_REASON, updated_at=now
    )
    locked.status, locked.cancelled_at = S.CANCELLED, now
    locked.save(update_fields=["status", "cancelled_at", "updated_at"])
    _audit(actor, "cancel", locked, before, recipients_cancelled=cancelled)
    _copy_state(locked, broadcast)
    return locked


def broadcasts_start_due(*, now: dt.datetime) -> int:
    """Scheduled broadcasts whose first recipient is due start sending (one UPDATE)."""
    due = BroadcastRecipient.objects.filter(
        broadcast=OuterRef("pk"), state__in=(R.PENDING, R.HELD), send_after__lte=now
    )
    return (
        Broadcast.objects.filter(status=S.SCHEDULED)
        .filter(Exists(due))
        .update(status=S.SENDING, updated_at=now)
    )
