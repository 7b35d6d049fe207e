"""Reads of customer-side state."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from channels_app.channels import Channel

from .models import ConsentStatus, Contact, Message, Topic, TopicSubscription, Touchpoint


def topic_receives(topic: Topic, *, contact_ref: str = "pk") -> Exists:
    """SQL for "the contact receives sends naming `topic`" (policies.check_topic), correlated
    on the contact (`contact_ref` names its primary key in the outer query): an opt-out topic
    reaches everyone without an `unsubscribed` row, an opt-in one only `subscribed` rows."""
    rows = TopicSubscription.objects.filter(contact=OuterRef(contact_ref), topic=topic)
    if topic.default_subscribed:
        return ~Exists(rows.filter(status=ConsentStatus.UNSUBSCRIBED))
    return Exists(rows.filter(status=ConsentStatus.SUBSCRIBED))


def contact_by_address(*, channel: str, address: str) -> Contact | None:
    """The most recently created contact with this address on a channel."""
    if channel == Channel.EMAIL:
        lookup = {"email__iexact": address}
    elif channel == Channel.WHATSAPP:
        contact = Contact.objects.filter(whatsapp=address).order_by("-id").first()
        if contact is not None:
            return contact
        lookup = {"phone": address}
    else:
        lookup = {"phone": address}
    return Contact.objects.filter(**lookup).order_by("-id").first()


def contact_timeline(
    *,
    contact: Contact | None = None,
    contact_id: int | None = None,
    channel: str = "",
    kind: str = "",
) -> QuerySet:
    """A contact's touchpoints, newest first (served by the touchpoint_timeline index).

    Filtered by the contact's id as a literal, never joined to the contact by external id: the
    planner then knows how many rows that contact has and walks the index in order, where a
    join (or a subquery) makes it fetch and sort all of a busy contact's rows."""
    qs = Touchpoint.objects.filter(
        contact_id=contact.pk if contact is not None else contact_id
    ).order_by("-occurred_at", "-id")
    if channel:
        qs = qs.filter(channel=channel)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def message_detail(*, message_id: str) -> Message | None:
    return Message.objects.select_related("contact", "template").filter(pk=message_id).first()
