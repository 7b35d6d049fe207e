"""Topic subscriptions per contact, with their history in the consent ledger."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..models import (
    ConsentChange,
    ConsentStatus,
    Contact,
    Message,
    Topic,
    TopicSubscription,
)
from .consent import _touchpoint
from .contacts import contacts_changed_announce
from .touchpoints import touchpoint_record


def topic_subscription_set(
    *,
    contact: Contact,
    topic: Topic,
    status: str,
    source: str,
    message: Message | None = None,
    note: str = "",
    actor_id: int | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Record a contact's explicit choice on a topic (subscribed / unsubscribed), with a
    ledger row (ConsentChange with `topic`) and a timeline entry; False if unchanged."""
    if status not in (ConsentStatus.SUBSCRIBED, ConsentStatus.UNSUBSCRIBED):
        raise ValueError(f"a topic subscription is subscribed or unsubscribed, not {status!r}")
    now = occurred_at or timezone.now()
    with transaction.atomic():
        row = (
            TopicSubscription.objects.select_for_update()
            .filter(contact=contact, topic=topic)
            .first()
        )
        previous = row.status if row else ConsentStatus.UNKNOWN
        if previous == status:
            return False
        created = False
        if row is None:
            # Two first choices at once: the unique constraint lets one in; the other waits
            # on it and then updates it.
            row, created = TopicSubscription.objects.select_for_update().get_or_create(
                contact=contact,
                topic=topic,
                defaults={"status": status, "source": source, "changed_at": now},
            )
            if not created:
                previous = row.status
                if previous == status:
                    return False
        if not created:
            row.status, row.source, row.changed_at = status, source, now
            row.save(update_fields=["status", "source", "changed_at"])
        change = ConsentChange.objects.create(
            contact=contact,
            channel="",
            topic=topic,
            status=status,
            previous_status=previous,
            source=source,
            note=note[:255],
            message=message,
            changed_by_id=actor_id,
            changed_at=now,
        )
        entry = _touchpoint(change, note=note)
        entry["data"]["topic"] = topic.slug
        touchpoint_record(**entry)
        # Segments with a topic condition follow (audiences marks the contact).
        contacts_changed_announce([contact.pk])
    return True


def topic_subscriptions(*, contact: Contact) -> dict[str, str]:
    """{topic slug: explicit status} of a contact's choices (no entry: the default)."""
    return dict(
        TopicSubscription.objects.filter(contact=contact)
        .order_by("topic__position", "topic__slug")
        .values_list("topic__slug", "status")
    )


def topic_effective(*, topic: Topic, status: str) -> bool:
    """Whether a contact with this explicit `status` (or unknown) receives the topic."""
    if status == ConsentStatus.UNKNOWN:
        return topic.default_subscribed
    return status == ConsentStatus.SUBSCRIBED
