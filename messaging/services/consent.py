"""Consent per contact and channel, with its history."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..models import (
    Consent,
    ConsentChange,
    ConsentSource,
    ConsentStatus,
    Contact,
    Direction,
    Message,
    TouchpointKind,
)
from .touchpoints import touchpoint_record


def consent_set(
    *,
    contact: Contact,
    channel: str,
    status: str,
    source: str,
    message: Message | None = None,
    note: str = "",
    actor_id: int | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Change a contact's consent on a channel, keeping the history; False if unchanged."""
    now = occurred_at or timezone.now()
    with transaction.atomic():
        consent, _ = Consent.objects.select_for_update().get_or_create(
            contact=contact,
            channel=channel,
            defaults={"status": ConsentStatus.UNKNOWN, "changed_at": now},
        )
        previous = consent.status
        if previous == status:
            return False
        consent.status, consent.source, consent.changed_at = status, source, now
        consent.save(update_fields=["status", "source", "changed_at"])
        change = ConsentChange.objects.create(
            contact=contact,
            channel=channel,
            status=status,
            previous_status=previous,
            source=source,
            note=note[:255],
            message=message,
            changed_by_id=actor_id,
            changed_at=now,
        )
        touchpoint_record(
            contact_id=contact.pk,
            kind=TouchpointKind.CONSENT_CHANGED,
            direction=Direction.INBOUND if source == ConsentSource.KEYWORD else Direction.INTERNAL,
            channel=channel,
            message_id=message.pk if message else None,
            occurred_at=now,
            data={"status": status, "previous_status": previous, "source": source, "note": note},
            dedupe_key=f"consent:{change.pk}",
            actor_id=actor_id,
        )
        transaction.on_commit(
            lambda: signals.consent_changed.send(
                sender=Consent,
                contact_id=contact.pk,
                channel=channel,
                status=status,
                previous_status=previous,
                source=source,
            ),
            robust=True,
        )
    return True
