"""Building blocks for the attribution tests: journeys and broadcasts counting conversions,
messages they sent (sent / delivered / read at given times), clicks, and events."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from django.utils import timezone

from campaigns.models import Broadcast, BroadcastRecipient
from journeys import services
from journeys.models import Enrollment, Event, Journey, JourneyMessage, Step
from messaging.models import Contact, Message, Touchpoint

HOUR = dt.timedelta(hours=1)
T = timezone.now().replace(microsecond=0) - dt.timedelta(days=1)  # the conversion's time
_seq = itertools.count()


def journey(
    slug: str,
    events: list[str] = ("order.completed",),
    *,
    window: int = 72,
    model: str = "last_click",
    revenue_property: str = "total",
    status: str = "active",
) -> Journey:
    made = Journey.objects.create(
        name=slug,
        slug=slug,
        status=status,
        trigger_event=f"{slug}.started",
        entry_policy=Journey.EntryPolicy.EVERY_TIME,
        conversion_events=list(events),
        conversion_window_hours=window,
        attribution_model=model,
        revenue_property=revenue_property,
    )
    Step.objects.create(journey=made, position=0, key="send", kind="send", config={})
    return made


def broadcast(
    slug: str,
    events: list[str] = ("order.completed",),
    *,
    window: int = 72,
    model: str = "last_click",
    revenue_property: str = "total",
) -> Broadcast:
    return Broadcast.objects.create(
        name=slug,
        slug=slug,
        status=Broadcast.Status.COMPLETED,
        template_slug="promo",
        conversion_events=list(events),
        conversion_window_hours=window,
        attribution_model=model,
        revenue_property=revenue_property,
    )


def _message(
    contact: Contact,
    *,
    sent: dt.datetime,
    delivered: dt.datetime | None = None,
    read: dt.datetime | None = None,
    status: str | None = None,
    channel: str = "sms",
) -> Message:
    if status is None:
        status = "read" if read else "delivered" if delivered else "sent"
    message = Message.objects.create(
        direction="outbound",
        channel=channel,
        contact=contact,
        to_address=contact.phone,
        status=status,
        sent_at=sent,
        delivered_at=delivered,
        read_at=read,
    )
    Message.objects.filter(pk=message.pk).update(created_at=sent)
    message.refresh_from_db()
    return message


def journey_message(j: Journey, contact: Contact, **times: Any) -> Message:
    message = _message(contact, **times)
    enrollment = Enrollment.objects.create(
        journey=j,
        contact=contact,
        entry_policy=j.entry_policy,
        state=Enrollment.State.COMPLETED,
    )
    JourneyMessage.objects.create(
        message=message, enrollment=enrollment, step=j.steps.get(), journey=j
    )
    return message


def broadcast_message(b: Broadcast, contact: Contact, **times: Any) -> Message:
    message = _message(contact, **times)
    BroadcastRecipient.objects.create(
        broadcast=b,
        contact=contact,
        state=BroadcastRecipient.State.SENT,
        channel=message.channel,
        message=message,
        send_after=message.created_at,
        updated_at=message.created_at,
    )
    return message


def click(message: Message, at: dt.datetime, *, bot: bool = False) -> Touchpoint:
    kind = "clicked_bot" if bot else "clicked"
    return Touchpoint.objects.create(
        contact=message.contact,
        channel=message.channel,
        direction="inbound",
        kind=kind,
        message=message,
        occurred_at=at,
        data={"bot": True} if bot else {},
        dedupe_key=f"test-{kind}:{next(_seq)}",
    )


def fire(
    contact: Contact,
    name: str = "order.completed",
    *,
    at: dt.datetime = T,
    key: str | None = None,
    **properties: Any,
) -> Event:
    event, _ = services.event_ingest(
        name=name,
        contact=contact,
        properties=properties,
        occurred_at=at,
        idempotency_key=key,
    )
    return event
