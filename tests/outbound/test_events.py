"""Each event type, produced by the real flows (status changes, inbound replies, consent,
surveys, goal conversions) and received, signed, at a local endpoint."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from channels_app.events import InboundEvent, TrackingEvent
from channels_app.keywords import classify_keyword
from journeys.models import Enrollment, Journey, Step
from journeys.services import event_ingest
from messaging import services as messaging_services
from messaging.models import Message
from messaging.provider_events import inbound_message_apply, tracking_events_apply
from messaging.status import MessageStatus
from outbound.models import EventType, WebhookDelivery
from tests.factories import ContactFactory, TemplateFactory

from .conftest import spec_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a callable and every on-commit hook it (and the hooks) register, inline."""

    def _run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return _run


def received(receiver, subscription) -> list[dict]:
    """The payloads the endpoint got, each checked against the spec's signature."""
    for request in receiver.requests:
        assert spec_verify(secret=subscription.secret, headers=request.headers, body=request.body)
    return [r.json for r in receiver.requests]


def outbound_message(contact, status=MessageStatus.SENDING) -> Message:
    return Message.objects.create(
        direction="outbound",
        channel="sms",
        contact=contact,
        to_address=contact.phone,
        body="Your order shipped",
        status=status,
        provider="twilio",
        provider_message_id=f"SM{uuid.uuid4().hex}",
        source="api",
    )


def inbound_sms(contact, body: str) -> InboundEvent:
    return InboundEvent(
        provider="twilio",
        channel="sms",
        timestamp=timezone.now(),
        event_id=f"SM{uuid.uuid4().hex}",
        sender=contact.phone,
        recipient=settings.TWILIO_SMS_FROM,
        body=body,
        full_body=body,
        keyword=classify_keyword(body),
    )


def test_message_status_changes(receiver, subscribe, committed):
    subscription = subscribe("message.sent", "message.delivered", "message.failed")
    contact = ContactFactory(external_id="cust-42")
    message = outbound_message(contact)
    other = outbound_message(contact, status=MessageStatus.SENT)

    committed(messaging_services.message_transition, message=message, to=MessageStatus.SENT)
    committed(messaging_services.message_transition, message=message, to=MessageStatus.DELIVERED)
    committed(
        messaging_services.message_transition,
        message=other,
        to=MessageStatus.UNDELIVERED,
        fields={"error_code": "30003", "error_message": "Unreachable destination handset"},
    )

    sent, delivered, failed = received(receiver, subscription)
    assert [p["type"] for p in (sent, delivered, failed)] == [
        "message.sent",
        "message.delivered",
        "message.failed",
    ]
    assert sent["data"]["contact"] == {"id": contact.pk, "external_id": "cust-42"}
    assert sent["data"]["message"]["id"] == str(message.pk)
    assert (sent["data"]["message"]["status"], sent["data"]["message"]["previous_status"]) == (
        "sent",
        "sending",
    )
    assert delivered["data"]["message"]["status"] == "delivered"
    message.refresh_from_db()
    assert delivered["timestamp"] == message.delivered_at.isoformat().replace("+00:00", "Z")
    assert failed["data"]["message"]["id"] == str(other.pk)
    assert failed["data"]["message"]["status"] == "undelivered"
    assert failed["data"]["message"]["error_code"] == "30003"


def test_engagement_without_a_status_change_is_not_a_webhook(receiver, subscribe, committed):
    subscribe(*[t.value for t in EventType])
    message = outbound_message(ContactFactory(), status=MessageStatus.DELIVERED)
    clicked = TrackingEvent(
        event_type="clicked",
        provider="sendgrid",
        channel="sms",
        timestamp=timezone.now(),
        event_id="evt-1",
        provider_message_id=message.provider_message_id,
        url="https://example.com",
    )

    committed(tracking_events_apply, events=[clicked])

    assert receiver.requests == []


def test_provider_callback_failure_is_message_failed(receiver, subscribe, committed):
    subscription = subscribe("message.failed")
    message = outbound_message(ContactFactory(), status=MessageStatus.SENT)
    bounce = TrackingEvent(
        event_type="bounced",
        provider="sendgrid",
        channel="sms",
        timestamp=timezone.now(),
        event_id="evt-bounce",
        provider_message_id=message.provider_message_id,
        reason="550 mailbox unavailable",
    )

    committed(tracking_events_apply, events=[bounce])

    [failed] = received(receiver, subscription)
    assert failed["type"] == "message.failed"
    assert failed["data"]["message"]["reason"] == "bounced"


def test_an_inbound_reply(receiver, subscribe, committed):
    subscription = subscribe("message.replied")
    contact = ContactFactory(external_id="cust-7", phone="+14155552671")
    asked = outbound_message(contact, status=MessageStatus.DELIVERED)
    long_body = "Yes please! " + "x" * 3000

    inbound = committed(inbound_message_apply, event=inbound_sms(contact, long_body))

    [replied] = received(receiver, subscription)
    assert replied["type"] == "message.replied"
    data = replied["data"]
    assert data["contact"] == {"id": contact.pk, "external_id": "cust-7"}
    assert data["message"]["id"] == str(inbound.pk)
    assert data["message"]["channel"] == "sms"
    assert data["message"]["in_reply_to"] == str(asked.pk)
    assert data["message"]["body"] == long_body[:2000]
    assert data["message"]["body_truncated"] is True
    assert data["message"]["from"] == "+14155552671"


def test_stop_is_a_reply_and_an_unsubscribe_and_start_a_subscribe(receiver, subscribe, committed):
    subscription = subscribe("message.replied", "contact.unsubscribed", "contact.subscribed")
    contact = ContactFactory(external_id="cust-8")

    committed(inbound_message_apply, event=inbound_sms(contact, "STOP"))
    committed(inbound_message_apply, event=inbound_sms(contact, "START"))

    payloads = received(receiver, subscription)
    assert sorted(p["type"] for p in payloads) == [
        "contact.subscribed",
        "contact.unsubscribed",
        "message.replied",
        "message.replied",
    ]
    unsubscribed = next(p for p in payloads if p["type"] == "contact.unsubscribed")
    assert unsubscribed["data"] == {
        "contact": {"id": contact.pk, "external_id": "cust-8"},
        "channel": "sms",
        "status": "unsubscribed",
        "previous_status": "unknown",
        "source": "keyword",
    }
    stop = next(p for p in payloads if p["type"] == "message.replied")
    assert stop["data"]["message"]["keyword"] == "stop"


def test_consent_set_through_the_service(receiver, subscribe, committed):
    subscription = subscribe("contact.subscribed", "contact.unsubscribed")
    contact = ContactFactory(external_id="cust-9")

    committed(
        messaging_services.consent_set,
        contact=contact,
        channel="email",
        status="subscribed",
        source="api",
    )
    committed(
        messaging_services.consent_set,
        contact=contact,
        channel="email",
        status="unknown",
        source="api",
    )

    [subscribed] = received(receiver, subscription)  # back to "unknown" is neither
    assert subscribed["type"] == "contact.subscribed"
    assert subscribed["data"]["channel"] == "email"
    assert subscribed["data"]["source"] == "api"


def _journey(*steps: dict, **fields) -> Journey:
    n = uuid.uuid4().hex[:6]
    journey = Journey.objects.create(
        name=f"Webhooks {n}", slug=f"webhooks-{n}", status="active", **fields
    )
    for position, spec in enumerate(steps):
        Step.objects.create(journey=journey, position=position, **spec)
    return journey


def test_a_survey_answer(receiver, subscribe, committed, simulator):
    subscription = subscribe("survey.answered")
    TemplateFactory(slug="nps", channel="sms", body="From 0 to 10, how likely…?")
    journey = _journey(
        {
            "key": "nps",
            "kind": "survey",
            "next_step": "",
            "config": {"template": "nps", "channel": "sms", "timeout_seconds": 86400},
        },
        trigger_event="order.completed",
    )
    contact = ContactFactory(external_id="cust-10", phone="+14155552672")
    committed(event_ingest, name="order.completed", contact=contact)
    assert len(simulator.messages()) == 1

    answer = committed(inbound_message_apply, event=inbound_sms(contact, "9"))

    [answered] = received(receiver, subscription)
    assert answered["type"] == "survey.answered"
    data = answered["data"]
    assert data["journey"] == {"id": journey.pk, "slug": journey.slug}
    assert data["contact"] == {"id": contact.pk, "external_id": "cust-10"}
    response = data["survey_response"]
    assert (response["score"], response["nps_category"], response["status"]) == (
        9,
        "promoter",
        "answered",
    )
    assert (response["step"], response["answer"]) == ("nps", "9")
    assert response["answer_message_id"] == str(answer.pk)
    assert data["enrollment"] == {"id": Enrollment.objects.get(contact=contact).pk}


def test_a_converted_enrollment(receiver, subscribe, committed):
    subscription = subscribe("journey.converted")
    journey = _journey(
        {"key": "wait", "kind": "wait", "next_step": "", "config": {"duration_seconds": 86400}},
        trigger_event="user.signed_up",
        goal_event="onboarding.completed",
    )
    contact = ContactFactory(external_id="cust-11")
    committed(event_ingest, name="user.signed_up", contact=contact)
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "waiting"
    assert receiver.requests == []

    committed(event_ingest, name="onboarding.completed", contact=contact)

    [converted] = received(receiver, subscription)
    assert converted["type"] == "journey.converted"
    assert converted["data"]["journey"]["slug"] == journey.slug
    assert converted["data"]["journey"]["goal_event"] == "onboarding.completed"
    assert converted["data"]["enrollment"]["id"] == enrollment.pk
    assert converted["data"]["enrollment"]["state"] == "converted"
    assert converted["data"]["contact"] == {"id": contact.pk, "external_id": "cust-11"}


def test_only_subscribers_of_the_type_get_it_and_each_gets_its_own_delivery(
    receiver, subscribe, committed
):
    first = subscribe("message.replied")
    second = subscribe("message.replied", "message.sent")
    subscribe("message.sent")
    subscribe("message.replied", is_active=False)
    contact = ContactFactory()

    committed(inbound_message_apply, event=inbound_sms(contact, "hello"))

    deliveries = WebhookDelivery.objects.filter(event_type="message.replied")
    assert sorted(d.subscription_id for d in deliveries) == sorted([first.pk, second.pk])
    assert len({d.webhook_id for d in deliveries}) == 2
    assert len(receiver.requests) == 2


def test_a_failing_publish_never_breaks_the_flow_that_sent_the_hook(
    receiver, subscribe, committed, monkeypatch
):
    subscribe("message.replied")

    def broken(**_):
        raise RuntimeError("payload bug")

    monkeypatch.setattr("outbound.payloads.message_replied", broken)
    contact = ContactFactory()

    inbound = committed(inbound_message_apply, event=inbound_sms(contact, "hello"))

    assert inbound is not None
    assert receiver.requests == []
