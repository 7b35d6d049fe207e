"""Message status: the one place transitions happen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import signals
from ..models import Message
from ..status import TIMESTAMP_FIELD, sources_for
from .touchpoints import touchpoint_record


def message_transition(
    *,
    message: Message,
    to: str,
    fields: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    touchpoint_kind: str | None = None,
    touchpoint_data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    actor_id: int | None = None,
) -> bool:
    """Move a message to `to` if the status machine allows it from where it is now in the
    database; write its touchpoint and publish the change. False when not allowed (late,
    repeated or backwards updates are ignored)."""
    now = timezone.now()
    when = occurred_at or now
    update: dict[str, Any] = {"status": to, "updated_at": now, **(fields or {})}
    stamp = TIMESTAMP_FIELD.get(to)
    if stamp == "queued_at":
        # A retry going back to `queued` keeps the original queued_at.
        update[stamp] = Coalesce(F(stamp), Value(when))
    elif stamp:
        update[stamp] = when
    # No savepoint inside a caller's transaction: nothing here is meant to fail on its own
    # (the touchpoint insert ignores conflicts), so an error rolls the caller back as a whole
    # rather than costing every transition two more round trips (SAVEPOINT, RELEASE).
    with transaction.atomic(savepoint=False):
        moved = Message.objects.filter(pk=message.pk, status__in=sources_for(to)).update(**update)
        if not moved:
            return False
        previous = message.status
        message.status = to
        for name, value in (fields or {}).items():
            setattr(message, name, value)
        kind = touchpoint_kind or to
        touchpoint_record(
            contact_id=message.contact_id,
            kind=kind,
            direction=message.direction,
            channel=message.channel,
            message_id=message.pk,
            occurred_at=when,
            data=touchpoint_data or {},
            dedupe_key=dedupe_key or f"msg:{message.pk}:{kind}",
            actor_id=actor_id,
        )
        transaction.on_commit(
            lambda: signals.message_status_changed.send(
                sender=Message,
                message_id=message.pk,
                contact_id=message.contact_id,
                channel=message.channel,
                status=to,
                previous_status=previous,
                kind=kind,
            ),
            robust=True,
        )
    return True
