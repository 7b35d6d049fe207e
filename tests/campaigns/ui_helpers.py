"""Shared builders for the broadcast admin, API, dry-run and report tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from audiences.models import Segment
from audiences.services import segment_create, static_segment_add
from campaigns.models import Broadcast
from messaging.models import Contact, Message
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)  # 12:00 in London, 21:00 in Tokyo


def static_segment(slug: str, contacts: list[Contact]) -> Segment:
    segment = segment_create(name=slug.title(), slug=slug, kind="static")
    if not contacts:
        return segment
    static_segment_add(
        segment=segment,
        contacts=Contact.objects.filter(pk__in=[c.pk for c in contacts]),
        now=timezone.now(),
    )
    return segment


def templates(slug: str = "promo", *, whatsapp_sid: str = "", channels=("sms", "email")):
    made = {}
    for channel in channels:
        extra: dict[str, Any] = {}
        if channel == "email":
            extra = {"subject": "News", "body": "Hello {{ contact.first_name }}"}
        elif channel == "whatsapp":
            extra = {"body": "Hi {{ contact.first_name }}", "content_sid": whatsapp_sid}
        else:
            extra = {"body": "Hi {{ contact.first_name }}, new in store."}
        made[channel] = TemplateFactory(slug=slug, channel=channel, **extra)
    return made


def broadcast(
    segments: list[Segment],
    *,
    exclude: list[Segment] = (),
    slug: str = "black-friday",
    **fields: Any,
) -> Broadcast:
    values = {
        "name": slug.replace("-", " ").title(),
        "slug": slug,
        "template_slug": "promo",
        "channel_order": ["sms", "email"],
        **fields,
    }
    made = Broadcast.objects.create(**values)
    made.segments.set(segments)
    made.exclude_segments.set(exclude)
    return made


def sms_subscriber(**fields: Any) -> Contact:
    contact = ContactFactory(**fields)
    ConsentFactory(contact=contact, channel="sms")
    return contact


def recent_marketing(contact: Contact, n: int, *, at: dt.datetime) -> None:
    for i in range(n):
        m = Message.objects.create(
            direction="outbound",
            channel="sms",
            contact=contact,
            to_address=contact.phone,
            status="delivered",
            category="marketing",
        )
        Message.objects.filter(pk=m.pk).update(created_at=at - dt.timedelta(hours=1 + i))
