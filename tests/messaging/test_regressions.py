"""Regression tests for bugs found in review: each failed before its fix."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from channels_app.events import InboundEvent, TrackingEvent
from messaging import services
from messaging.models import Contact, Conversation, Message, Touchpoint
from messaging.policies import consent_status
from messaging.provider_events import inbound_message_apply, tracking_events_apply
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def sms_in(sender, body, channel="sms"):
    from channels_app.keywords import classify_keyword

    return InboundEvent(
        provider="twilio",
        channel=channel,
        timestamp=timezone.now(),
        event_id=f"SM{uuid.uuid4().hex}",
        sender=sender,
        recipient="+15005550006",
        body=body,
        full_body=body,
        keyword=classify_keyword(body),
    )


def test_stop_unsubscribes_every_contact_on_the_number(simulator):
    a = ContactFactory(phone="+14155552600")
    b = ContactFactory(phone="+14155552600")
    services.message_deliver(
        message_id=services.message_create(contact=b, channel="sms", body="to b")[0].pk
    )
    inbound_message_apply(event=sms_in("+14155552600", "STOP"))
    assert consent_status(contact=a, channel="sms") == "unsubscribed"
    assert consent_status(contact=b, channel="sms") == "unsubscribed"
    assert services.message_create(contact=a, channel="sms", body="x")[0].status == "skipped"


def test_yes_lifts_an_opt_out_but_is_not_a_marketing_opt_in():
    contact = ContactFactory(phone="+14155552601")
    inbound_message_apply(event=sms_in("+14155552601", "Yes"))
    assert consent_status(contact=contact, channel="sms") == "unknown"
    assert Conversation.objects.get(contact=contact).status == "needs_reply"  # a human reads it
    inbound_message_apply(event=sms_in("+14155552601", "STOP"))
    inbound_message_apply(event=sms_in("+14155552601", "yes"))
    assert consent_status(contact=contact, channel="sms") == "subscribed"


def test_replaying_a_send_does_not_reapply_the_contact(api, simulator):
    payload = {
        "contact": {"external_id": "r1", "phone": "+14155552602", "consent": {"sms": "subscribed"}},
        "channel": "sms",
        "body": "hello",
    }
    first = api.post("/api/v1/messages/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
    inbound_message_apply(event=sms_in("+14155552602", "STOP"))
    again = api.post("/api/v1/messages/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    contact = Contact.objects.get(external_id="r1")
    assert consent_status(contact=contact, channel="sms") == "unsubscribed"


def test_replaying_an_event_does_not_reapply_the_contact(api):
    payload = {
        "name": "x.y",
        "contact": {"external_id": "r2", "phone": "+14155552603", "consent": {"sms": "subscribed"}},
    }
    api.post("/api/v1/events/", payload, format="json", HTTP_IDEMPOTENCY_KEY="e")
    inbound_message_apply(event=sms_in("+14155552603", "STOP"))
    assert (
        api.post("/api/v1/events/", payload, format="json", HTTP_IDEMPOTENCY_KEY="e").status_code
        == 200
    )
    contact = Contact.objects.get(external_id="r2")
    assert consent_status(contact=contact, channel="sms") == "unsubscribed"


def test_a_contact_found_by_address_takes_the_requests_fields(api, simulator):
    existing = ContactFactory(external_id=None, phone="+14155552604", first_name="Old")
    response = api.post(
        "/api/v1/messages/",
        {
            "contact": {
                "phone": "+14155552604",
                "first_name": "New",
                "consent": {"sms": "unsubscribed"},
            },
            "channel": "sms",
            "body": "hi",
        },
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["status"] == "skipped"
    existing.refresh_from_db()
    assert existing.first_name == "New"


def test_a_held_whatsapp_template_keeps_its_content_sid(simulator, settings):
    contact = ContactFactory(whatsapp="+14155552605", timezone="UTC")
    services.consent_set(contact=contact, channel="whatsapp", status="subscribed", source="api")
    template = TemplateFactory(
        channel="whatsapp", body="Hi", content_sid="HX" + "7" * 32, content_variables={"1": "x"}
    )
    import time_machine

    with time_machine.travel(timezone.now().replace(hour=23, minute=0), tick=False):
        message, _ = services.message_create(
            contact=contact, channel="whatsapp", template=template, category="marketing"
        )
    assert message.status == "queued" and message.next_attempt_at.hour == 8
    assert message.content_sid == "HX" + "7" * 32
    assert services.message_deliver(message_id=message.pk).result == "not due"  # still held
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())  # 08:00
    services.message_deliver(message_id=message.pk)
    assert simulator.messages()[-1]["content_sid"] == "HX" + "7" * 32  # outside the window


def test_enqueue_failure_after_commit_is_not_a_500(
    api, monkeypatch, django_capture_on_commit_callbacks
):
    calls = []

    def broker_down(*args, **kwargs):
        calls.append(args or kwargs)
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(services.messages, "enqueue_delivery", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/messages/",
            {
                "contact": {"external_id": "q1", "phone": "+14155552606"},
                "channel": "sms",
                "body": "hi",
            },
            format="json",
        )
    assert calls, "the enqueue after commit ran (and failed)"
    assert response.status_code == 202
    assert Message.objects.get().status == "queued"  # the sweeper will enqueue it


def test_overlong_rendered_subject_is_a_400(api):
    response = api.post(
        "/api/v1/messages/",
        {
            "contact": {"external_id": "s1", "email": "s1@example.com"},
            "channel": "email",
            "subject": "{{ event.s }}",
            "body": "b",
            "context": {"s": "x" * 600},
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "subject"


def test_overlong_inbound_email_sender_is_kept_without_breaking():
    sender = ("a" * 250) + "@example.com"
    event = InboundEvent(
        provider="sendgrid",
        channel="email",
        timestamp=timezone.now(),
        event_id="<x@y>",
        sender=sender,
        recipient="r@reply.example",
        body="hello",
        full_body="hello",
    )
    message = inbound_message_apply(event=event)
    assert message.from_address == sender and message.contact.email == ""


def test_a_new_email_address_clears_the_old_bounce(simulator):
    contact = ContactFactory(external_id="b1", email="old@example.com", email_undeliverable=True)
    services.contact_upsert(external_id="b1", data={"email": "new@example.com"})
    contact.refresh_from_db()
    assert not contact.email_undeliverable
    old_message = Message.objects.create(
        direction="outbound",
        channel="email",
        contact=contact,
        to_address="old@example.com",
        status="sent",
    )
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type="bounced",
                provider="sendgrid",
                channel="email",
                timestamp=timezone.now(),
                event_id="sg-late",
                message_id=str(old_message.pk),
                raw={"type": "bounce"},
            )
        ]
    )
    contact.refresh_from_db()
    assert not contact.email_undeliverable  # a late bounce about the old address


def test_whatsapp_and_sms_numbers_are_judged_apart():
    contact = ContactFactory(phone="+14155552607", whatsapp="+14155552608")
    failed = Message.objects.create(
        direction="outbound",
        channel="whatsapp",
        contact=contact,
        to_address="+14155552608",
        status="sent",
    )
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type="undelivered",
                provider="twilio",
                channel="whatsapp",
                timestamp=timezone.now(),
                event_id="SMw:undelivered",
                message_id=str(failed.pk),
                error_code="30006",
            )
        ]
    )
    contact.refresh_from_db()
    assert contact.whatsapp_invalid and not contact.phone_invalid
    assert services.message_create(contact=contact, channel="sms", body="x")[0].status == "queued"


def test_a_bounce_after_delivered_is_still_on_the_timeline():
    contact = ContactFactory()
    message = Message.objects.create(
        direction="outbound",
        channel="email",
        contact=contact,
        to_address=contact.email,
        status="delivered",
    )
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type="bounced",
                provider="sendgrid",
                channel="email",
                timestamp=timezone.now(),
                event_id="sg-after",
                message_id=str(message.pk),
                raw={"type": "bounce"},
            )
        ]
    )
    assert Touchpoint.objects.filter(message=message, kind="bounced").count() == 1


def test_runaway_liquid_is_refused(api):
    response = api.post(
        "/api/v1/messages/",
        {
            "contact": {"external_id": "l1", "phone": "+14155552609"},
            "channel": "sms",
            "body": "{% for i in (1..10000000) %}xxxxxxxxxx{% endfor %}",
        },
        format="json",
    )
    assert response.status_code == 400
    assert Message.objects.count() == 0
