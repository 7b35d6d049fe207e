"""`{"engagement": …}`: received / delivered / opened / clicked / replied, scoped to a
template or a journey (a registered scope), in a window, with counts."""

from __future__ import annotations

import datetime as dt

import pytest

from audiences.definition import DefinitionError, definition_validate
from channels_app.events import EventType, InboundEvent, TrackingEvent
from journeys.models import JourneyMessage
from messaging.models import Touchpoint
from messaging.provider_events import inbound_message_apply, tracking_events_apply
from tests.factories import ContactFactory, TemplateFactory

from .conftest import NOW, enroll, journey, message
from .test_conditions import matching

pytestmark = pytest.mark.django_db


def opened(msg, *, days_ago: float = 1, kind: str = "opened") -> None:
    """The provider's open/click webhook, through the real apply path."""
    event_type = EventType.OPENED if kind == "opened" else EventType.CLICKED
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type=event_type,
                provider="sendgrid",
                channel="email",
                timestamp=NOW - dt.timedelta(days=days_ago),
                event_id=f"{kind}-{msg.pk}-{days_ago}",
                message_id=str(msg.pk),
            )
        ]
    )


def replied(msg, *, days_ago: float = 1, body: str = "thanks!") -> None:
    """An SMS reply through the real inbound path (it links in_reply_to by sender)."""
    inbound_message_apply(
        event=InboundEvent(
            provider="twilio",
            channel="sms",
            timestamp=NOW - dt.timedelta(days=days_ago),
            event_id=f"SM{msg.pk.hex}",
            sender=msg.to_address,
            recipient="+15550000000",
            body=body,
        )
    )


def test_received_and_delivered_follow_the_status():
    ana, ben, cy, dee, eve = (
        ContactFactory(external_id=n) for n in ("ana", "ben", "cy", "dee", "eve")
    )
    message(ana, "sent")
    message(ben, "delivered")
    message(cy, "read")
    message(dee, "failed")
    message(dee, "skipped")
    message(dee, "queued")
    # a status callback moved it from sending straight to delivered: no sent_at
    message(eve, "delivered", sent_at=None, delivered_at=NOW - dt.timedelta(days=2))
    assert matching({"engagement": "received"}) == {"ana", "ben", "cy", "eve"}
    assert matching({"engagement": "delivered"}) == {"ben", "cy", "eve"}
    assert matching({"engagement": "delivered", "within_days": 1}) == {"ben", "cy"}
    assert matching({"engagement": "received", "count": {"eq": 0}}) == {"dee"}
    assert matching({"not": {"engagement": "received"}}) == {"dee"}


def test_template_scope_channel_window_and_count():
    welcome = TemplateFactory(slug="welcome", channel="email", subject="Hi")
    welcome_sms = TemplateFactory(slug="welcome", channel="sms")
    other = TemplateFactory(slug="other", channel="email", subject="Hi")
    ana, ben, cy = (ContactFactory(external_id=n) for n in ("ana", "ben", "cy"))
    message(ana, template=welcome, days_ago=2)
    message(ana, template=welcome_sms, channel="sms", days_ago=20)
    message(ben, template=other)
    message(cy, template=welcome_sms, channel="sms", days_ago=40)
    scoped = {"engagement": "received", "template": "welcome"}
    assert matching(scoped) == {"ana", "cy"}  # every channel's template of the slug
    assert matching({**scoped, "within_days": 30}) == {"ana"}
    assert matching({**scoped, "channel": "sms"}) == {"ana", "cy"}
    assert matching({**scoped, "count": {"gte": 2}}) == {"ana"}
    assert matching({**scoped, "within_days": 30, "count": {"gte": 2}}) == {"ana"}
    assert matching({**scoped, "within_days": 10, "count": {"lt": 2}}) == {"ana", "ben", "cy"}
    assert matching({**scoped, "since": "2026-10-01", "until": "2026-10-20"}) == {"cy"}


def test_opened_and_clicked_come_from_touchpoints():
    ana, ben, cy = (ContactFactory(external_id=n) for n in ("ana", "ben", "cy"))
    news = TemplateFactory(slug="news", channel="email", subject="Hi")
    a = message(ana, template=news, days_ago=5)
    b = message(ben, template=news, days_ago=45)
    message(cy, template=news)
    opened(a, days_ago=1)
    opened(a, days_ago=2, kind="clicked")
    opened(b, days_ago=40)
    assert Touchpoint.objects.filter(kind="opened").count() == 2
    assert matching({"engagement": "opened", "template": "news"}) == {"ana", "ben"}
    assert matching({"engagement": "opened", "template": "news", "within_days": 30}) == {"ana"}
    assert matching({"engagement": "clicked"}) == {"ana"}
    assert matching({"engagement": "clicked", "within_days": 1}) == set()


def test_replied_is_an_inbound_message_answering_it():
    ana, ben = ContactFactory(external_id="ana"), ContactFactory(external_id="ben")
    promo = journey("promo")
    other = journey("other")
    a = message(ana, channel="sms", to_address=ana.phone, days_ago=3)
    b = message(ben, channel="sms", to_address=ben.phone, days_ago=3)
    for msg, j in ((a, promo), (b, other)):
        JourneyMessage.objects.create(
            message=msg, enrollment=enroll(j, msg.contact), step=j.steps.get(), journey=j
        )
    replied(a, days_ago=2)
    assert matching({"engagement": "replied"}) == {"ana"}
    assert matching({"engagement": "replied", "journey": "promo"}) == {"ana"}
    assert matching({"engagement": "replied", "journey": "other"}) == set()
    assert matching({"engagement": "received", "journey": "other"}) == {"ben"}
    assert matching({"engagement": "replied", "within_days": 1}) == set()


def test_broadcast_like_scope_registered_by_another_app():
    """What campaigns does: register a scope returning a Message-id subquery."""
    from audiences.registry import MESSAGE_SCOPES, MessageScope, register_message_scope
    from messaging.models import Message

    def messages(value):
        return Message.objects.filter(metadata__batch=value).values("pk")

    def validate(value, path, errors):
        if not isinstance(value, str):
            errors.add(path, "A batch name.")

    ana, ben = ContactFactory(external_id="ana"), ContactFactory(external_id="ben")
    message(ana, metadata={"batch": "b1"})
    message(ben, metadata={"batch": "b2"})
    register_message_scope(MessageScope("batch", validate, messages))
    try:
        assert matching({"engagement": "delivered", "batch": "b1"}) == {"ana"}
        with pytest.raises(DefinitionError) as refused:
            definition_validate({"engagement": "delivered", "batch": 5}, slug=None, others={})
        assert refused.value.errors == {"batch": ["A batch name."]}
    finally:
        del MESSAGE_SCOPES["batch"]
