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
    Touchpoint,
    TouchpointKind,
)
from .touchpoints import touchpoint_record, touchpoints_write


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
        touchpoint_record(**_touchpoint(change, note=note))
        _announce(change)
    return True


def _touchpoint(change: ConsentChange, *, note: str) -> dict:
    """The timeline entry of a ledger row (the same for one change and for a batch)."""
    return {
        "contact_id": change.contact_id,
        "kind": TouchpointKind.CONSENT_CHANGED,
        "direction": (
            Direction.INBOUND if change.source == ConsentSource.KEYWORD else Direction.INTERNAL
        ),
        "channel": change.channel,
        "message_id": change.message_id,
        "occurred_at": change.changed_at,
        "data": {
            "status": change.status,
            "previous_status": change.previous_status,
            "source": change.source,
            "note": note,
        },
        "dedupe_key": f"consent:{change.pk}",
        "actor_id": change.changed_by_id,
    }


def _announce(change: ConsentChange) -> None:
    contact_id, channel, status = change.contact_id, change.channel, change.status
    previous, source = change.previous_status, change.source
    transaction.on_commit(
        lambda: signals.consent_changed.send(
            sender=Consent,
            contact_id=contact_id,
            channel=channel,
            status=status,
            previous_status=previous,
            source=source,
        ),
        robust=True,
    )


def consent_set_many(
    *,
    changes: dict[tuple[int, str], str],
    source: str,
    note: str = "",
    actor_id: int | None = None,
    occurred_at: datetime | None = None,
    never_resubscribe: bool = False,
) -> int:
    """`consent_set` for many contacts at once ({(contact_id, channel): status}): the same
    Consent, ConsentChange (ledger) and timeline rows and signals, in a fixed number of
    statements whatever the number of contacts. Returns how many consents changed.

    `never_resubscribe` (imports): an `unsubscribed` consent is left as it is, decided under
    the row lock, so a STOP that lands while the caller prepared its batch still wins."""
    if not changes:
        return 0
    now = occurred_at or timezone.now()
    with transaction.atomic():
        current = {
            (c.contact_id, c.channel): c
            for c in Consent.objects.select_for_update()
            .filter(
                contact_id__in={cid for cid, _ in changes},
                channel__in={channel for _, channel in changes},
            )
            .order_by()
        }
        created, updated, ledger = [], [], []
        for (contact_id, channel), status in changes.items():
            consent = current.get((contact_id, channel))
            previous = consent.status if consent else ConsentStatus.UNKNOWN
            if previous == status:
                continue
            if never_resubscribe and previous == ConsentStatus.UNSUBSCRIBED:
                continue
            if consent is None:
                created.append(
                    Consent(
                        contact_id=contact_id,
                        channel=channel,
                        status=status,
                        source=source,
                        changed_at=now,
                    )
                )
            else:
                consent.status, consent.source, consent.changed_at = status, source, now
                updated.append(consent)
            ledger.append(
                ConsentChange(
                    contact_id=contact_id,
                    channel=channel,
                    status=status,
                    previous_status=previous,
                    source=source,
                    note=note[:255],
                    changed_by_id=actor_id,
                    changed_at=now,
                )
            )
        Consent.objects.bulk_create(created)
        Consent.objects.bulk_update(updated, ["status", "source", "changed_at"], batch_size=1000)
        ConsentChange.objects.bulk_create(ledger)  # primary keys returned (PostgreSQL, SQLite)
        touchpoints_write([Touchpoint(**_touchpoint(change, note=note)) for change in ledger])
        for change in ledger:
            _announce(change)
    return len(ledger)
