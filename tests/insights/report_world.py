"""Rows the report tests build on: messages with what happened to them, written directly."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from campaigns.models import Broadcast, BroadcastRecipient
from insights.models import Conversion
from journeys.models import Enrollment, Event, Journey, JourneyMessage, Step, StepVisit
from messaging.models import ConsentChange, Message, Template, Touchpoint, TrackedLink
from tests.factories import ContactFactory, TemplateFactory

FIRST = dt.date(2026, 3, 1)
LAST = dt.date(2026, 3, 31)
IN_RANGE = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
_seq = itertools.count()


def message(
    *,
    channel: str = "sms",
    status: str = "delivered",
    at: dt.datetime = IN_RANGE,
    template: Template | None = None,
    contact=None,
) -> Message:
    contact = contact or ContactFactory()
    msg = Message.objects.create(
        direction="outbound",
        channel=channel,
        contact=contact,
        to_address="x",
        status=status,
        template=template,
        sent_at=at if status not in ("failed", "queued") else None,
        delivered_at=at if status in ("delivered", "read") else None,
    )
    Message.objects.filter(pk=msg.pk).update(created_at=at)
    msg.refresh_from_db()
    return msg


def touch(msg: Message, kind: str, *, contact=None, **data) -> Touchpoint:
    return Touchpoint.objects.create(
        contact=contact or msg.contact,
        channel=msg.channel,
        direction="inbound",
        kind=kind,
        message=msg,
        occurred_at=msg.created_at + dt.timedelta(hours=1),
        data=data,
        dedupe_key=f"test:{next(_seq)}",
    )


def provider_click(msg: Message, url: str = "https://shop.example/sale") -> Touchpoint:
    """SendGrid's click event, as provider_events writes it."""
    return touch(
        msg, "clicked", provider_status="click", provider_event_id=f"e{next(_seq)}", url=url
    )


def link(msg: Message, url: str = "https://shop.example/sale", position: int = 0) -> TrackedLink:
    return TrackedLink.objects.create(message=msg, url=url, position=position)


def link_click(tracked: TrackedLink, *, bot: bool = False, contact=None) -> Touchpoint:
    """A tracked link's click, as messaging.links.link_click writes it."""
    data = {"link": tracked.pk, "url": tracked.url}
    if bot:
        return touch(
            tracked.message, "clicked_bot", contact=contact, **data, bot=True, reason="head"
        )
    return touch(tracked.message, "clicked", contact=contact, **data)


def reply(msg: Message) -> Message:
    return Message.objects.create(
        direction="inbound",
        channel=msg.channel,
        contact=msg.contact,
        to_address="us",
        status="received",
        in_reply_to=msg,
    )


def unsubscribe(msg: Message, source: str = "one_click") -> ConsentChange:
    return ConsentChange.objects.create(
        contact=msg.contact,
        channel=msg.channel,
        status="unsubscribed",
        previous_status="subscribed",
        source=source,
        message=msg,
        changed_at=msg.created_at + dt.timedelta(hours=2),
    )


def convert(msg: Message, revenue: str | None = None, currency: str = "", **copied) -> Conversion:
    event = Event.objects.create(
        name="order.completed", contact=msg.contact, occurred_at=msg.created_at
    )
    msg = Message.objects.get(pk=msg.pk)  # its journey / broadcast links as they are now
    link_row = getattr(msg, "journey_link", None)
    recipient = getattr(msg, "broadcast_recipient", None)
    return Conversion.objects.create(
        event=event,
        contact=msg.contact,
        message=msg,
        journey=copied.get("journey") or (link_row.journey if link_row else None),
        step=copied.get("step") or (link_row.step if link_row else None),
        broadcast=recipient.broadcast if recipient else None,
        template=msg.template,
        channel=msg.channel,
        model="last_click",
        touch="clicked",
        event_name="order.completed",
        revenue=Decimal(revenue) if revenue is not None else None,
        currency=currency,
        occurred_at=msg.created_at + dt.timedelta(hours=3),
        touched_at=msg.created_at + dt.timedelta(hours=1),
    )


def journey(slug: str = "welcome", keys=("hello", "wait", "offer")) -> Journey:
    made = Journey.objects.create(
        name=slug.title(), slug=slug, trigger_event="signed.up", status="active"
    )
    for position, key in enumerate(keys):
        Step.objects.create(
            journey=made, position=position, key=key, kind="wait" if key == "wait" else "send"
        )
    return made


def enrollment(j: Journey, contact=None) -> Enrollment:
    return Enrollment.objects.create(
        journey=j, contact=contact or ContactFactory(), entry_policy="every_time", state="active"
    )


def visit(e: Enrollment, key: str, at: dt.datetime = IN_RANGE) -> StepVisit:
    return StepVisit.objects.create(enrollment=e, step=e.journey.steps.get(key=key), entered_at=at)


def journey_message(e: Enrollment, key: str, **kwargs) -> Message:
    msg = message(contact=e.contact, **kwargs)
    JourneyMessage.objects.create(
        message=msg, enrollment=e, step=e.journey.steps.get(key=key), journey=e.journey
    )
    return msg


def broadcast(slug: str = "spring-sale", name: str = "Spring sale") -> Broadcast:
    return Broadcast.objects.create(name=name, slug=slug, template_slug="promo")


def broadcast_message(b: Broadcast, **kwargs) -> Message:
    msg = message(**kwargs)
    BroadcastRecipient.objects.create(
        broadcast=b,
        contact=msg.contact,
        state="sent",
        channel=msg.channel,
        message=msg,
        send_after=msg.created_at,
        updated_at=msg.created_at,
    )
    return msg


def template(slug: str = "promo", channel: str = "email") -> Template:
    return TemplateFactory(slug=slug, channel=channel, subject="Hi", body="Sale!")
