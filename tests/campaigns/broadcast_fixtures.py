"""Broadcast test data: a staff member, contacts with consent, segments, a template family,
a draft. A module, not a conftest, so other campaigns test modules keep their own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.contrib.auth.models import User

from audiences.models import Segment
from audiences.services import segment_create, static_segment_add
from campaigns.models import Broadcast, BroadcastRecipient
from messaging.models import Contact, Message, Touchpoint
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

# A Monday, noon UTC: outside quiet hours in London (12:00) and New York (07:00 is inside!).
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def marketer() -> User:
    return User.objects.create_user("marketer", is_staff=True)


def people(n: int, *, prefix: str = "p", tz: str = "Europe/London", sms: str = "subscribed"):
    """n contacts with a phone and an email; SMS consent `sms` ("" for none)."""
    contacts = [ContactFactory(external_id=f"{prefix}-{i}", timezone=tz) for i in range(n)]
    if sms:
        for contact in contacts:
            ConsentFactory(contact=contact, channel="sms", status=sms)
    return contacts


_n = [0]


def static_segment(contacts: Iterable[Contact], slug: str | None = None) -> Segment:
    _n[0] += 1
    seg = segment_create(name="S", slug=slug or f"seg-{_n[0]}", kind=Segment.Kind.STATIC)
    ids = [c.pk for c in contacts]
    if ids:
        static_segment_add(segment=seg, contacts=Contact.objects.filter(pk__in=ids), now=NOW)
    return seg


def dynamic_segment(definition: dict, slug: str | None = None) -> Segment:
    _n[0] += 1
    return segment_create(
        name="D", slug=slug or f"dyn-{_n[0]}", kind=Segment.Kind.DYNAMIC, definition=definition
    )


def templates(slug: str = "promo", channels: Iterable[str] = ("sms", "email")) -> None:
    for channel in channels:
        TemplateFactory(
            slug=slug,
            channel=channel,
            subject="Sale" if channel == "email" else "",
            body="Hi {{ contact.first_name }}, our sale starts now!",
        )


def draft(
    segments: Iterable[Segment],
    *,
    exclude: Iterable[Segment] = (),
    slug: str = "winter-sale",
    **fields,
) -> Broadcast:
    fields.setdefault("template_slug", "promo")
    fields.setdefault("channel_order", ["sms", "email"])
    broadcast = Broadcast.objects.create(name=slug.title(), slug=slug, **fields)
    broadcast.segments.set(list(segments))
    broadcast.exclude_segments.set(list(exclude))
    return broadcast


def states(broadcast: Broadcast) -> dict[str, str]:
    """external_id → recipient state."""
    return dict(
        BroadcastRecipient.objects.filter(broadcast=broadcast).values_list(
            "contact__external_id", "state"
        )
    )


def messages_per_contact(broadcast: Broadcast) -> dict[str, int]:
    counts: dict[str, int] = {}
    keys = Message.objects.filter(idempotency_key__startswith=f"broadcast:{broadcast.pk}:")
    for external_id in keys.values_list("contact__external_id", flat=True):
        counts[external_id] = counts.get(external_id, 0) + 1
    return counts


def kinds(contact: Contact) -> list[str]:
    return list(
        Touchpoint.objects.filter(contact=contact, kind__startswith="broadcast_")
        .order_by("id")
        .values_list("kind", flat=True)
    )
