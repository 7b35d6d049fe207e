"""Applying normalised provider events: statuses, engagement, replies, keywords."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from channels_app.events import Attachment, InboundEvent, TrackingEvent
from channels_app.reply_token import reply_address
from messaging import services, signals
from messaging.models import ConsentChange, Contact, Message, Touchpoint
from messaging.policies import consent_status
from messaging.provider_events import inbound_message_apply, tracking_events_apply
from messaging.status import MessageStatus
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def outbound(contact, channel="sms", status=MessageStatus.SENT, **kw):
    return Message.objects.create(
        direction="outbound",
        channel=channel,
        contact=contact,
        to_address=kw.pop("to", None) or contact.address_for(channel),
        body="hello",
        status=status,
        provider_message_id=kw.pop("pid", f"SM{uuid.uuid4().hex}"),
        **kw,
    )


def status_event(message, event_type, *, event_id=None, **kw):
    return TrackingEvent(
        event_type=event_type,
        provider="twilio",
        channel=message.channel,
        timestamp=kw.pop("timestamp", NOW),
        event_id=event_id or f"{message.provider_message_id}:{event_type}",
        provider_message_id=kw.pop("pid", message.provider_message_id),
        **kw,
    )


def inbound(sender, body, channel="sms", **kw):
    from channels_app.keywords import classify_keyword

    return InboundEvent(
        provider=kw.pop("provider", "twilio"),
        channel=channel,
        timestamp=kw.pop("timestamp", NOW),
        event_id=kw.pop("event_id", f"SM{uuid.uuid4().hex}"),
        sender=sender,
        recipient=kw.pop("recipient", "+15005550006"),
        body=body,
        full_body=kw.pop("full_body", body),
        keyword=classify_keyword(body) if channel != "email" else "",
        **kw,
    )


def test_status_found_by_our_id_even_before_the_provider_id_is_stored():
    contact = ContactFactory()
    message = outbound(contact, status=MessageStatus.SENDING, pid="")
    event = TrackingEvent(
        event_type="delivered",
        provider="twilio",
        channel="sms",
        timestamp=NOW,
        event_id="SMx:delivered",
        provider_message_id="SMx",
        message_id=str(message.pk),
    )
    assert tracking_events_apply(events=[event])["applied"] == 1
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("delivered", "SMx")


def test_delivered_then_late_sent_and_duplicates():
    message = outbound(ContactFactory())
    delivered = status_event(message, "delivered")
    tracking_events_apply(events=[delivered, status_event(message, "sent"), delivered])
    message.refresh_from_db()
    assert message.status == "delivered"
    assert list(Touchpoint.objects.filter(message=message).values_list("kind", flat=True)) == [
        "delivered"
    ]


def test_unknown_message_is_ignored():
    event = TrackingEvent(
        event_type="delivered",
        provider="twilio",
        channel="sms",
        timestamp=NOW,
        event_id="SMnope:delivered",
        provider_message_id="SMnope",
    )
    assert tracking_events_apply(events=[event]) == {
        "applied": 0,
        "ignored": 0,
        "unknown_message": 1,
    }
    assert Touchpoint.objects.count() == 0


def test_undelivered_keeps_the_error_and_is_terminal():
    message = outbound(ContactFactory())
    tracking_events_apply(events=[status_event(message, "undelivered", error_code="30003")])
    tracking_events_apply(events=[status_event(message, "delivered")])
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("undelivered", "30003")


def test_engagement_events_are_touchpoints_once_each():
    message = outbound(ContactFactory(), "email")
    opened = TrackingEvent(
        event_type="opened",
        provider="sendgrid",
        channel="email",
        timestamp=NOW,
        event_id="sg-1",
        message_id=str(message.pk),
    )
    clicked = TrackingEvent(
        event_type="clicked",
        provider="sendgrid",
        channel="email",
        timestamp=NOW,
        event_id="sg-2",
        message_id=str(message.pk),
        url="https://example.com/x",
    )
    tracking_events_apply(events=[opened, clicked, opened])
    tps = Touchpoint.objects.filter(message=message).order_by("id")
    assert [t.kind for t in tps] == ["opened", "clicked"]
    assert tps[1].data["url"] == "https://example.com/x"


def test_hard_bounce_marks_email_undeliverable_and_spam_report_unsubscribes():
    contact = ContactFactory()
    bounced = outbound(contact, "email")
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type="bounced",
                provider="sendgrid",
                channel="email",
                timestamp=NOW,
                event_id="sg-b",
                message_id=str(bounced.pk),
                reason="550 no such user",
                raw={"type": "bounce"},
            )
        ]
    )
    contact.refresh_from_db()
    bounced.refresh_from_db()
    assert contact.email_undeliverable and bounced.status == "failed"
    assert Touchpoint.objects.filter(message=bounced, kind="bounced").exists()

    other = ContactFactory()
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type="complained",
                provider="sendgrid",
                channel="email",
                timestamp=NOW,
                event_id="sg-s",
                message_id=str(outbound(other, "email").pk),
            )
        ]
    )
    assert consent_status(contact=other, channel="email") == "unsubscribed"
    assert ConsentChange.objects.get(contact=other).source == "provider"


def test_reply_by_sms_links_to_the_latest_outbound_and_publishes(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory()
    outbound(contact)
    latest = outbound(contact)
    outbound(contact, "email")
    received = []
    signals.message_received.connect(
        lambda **kw: received.append(kw), weak=False, dispatch_uid="t-received"
    )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            message = inbound_message_apply(event=inbound(contact.phone, "Thanks!"))
    finally:
        signals.message_received.disconnect(dispatch_uid="t-received")
    assert message.in_reply_to_id == latest.pk and message.status == "received"
    tp = Touchpoint.objects.get(kind="replied")
    assert (tp.message_id, tp.direction, tp.data["body"]) == (latest.pk, "inbound", "Thanks!")
    assert tp.data["inbound_message_id"] == str(message.pk)
    assert [(r["message_id"], r["in_reply_to_id"]) for r in received] == [(message.pk, latest.pk)]


def test_duplicate_inbound_is_stored_once():
    contact = ContactFactory()
    event = inbound(contact.phone, "hello", event_id="SMdup")
    assert inbound_message_apply(event=event) is not None
    assert inbound_message_apply(event=event) is None
    assert Message.objects.filter(direction="inbound").count() == 1
    assert Touchpoint.objects.filter(kind="replied").count() == 1


def test_inbound_from_unknown_number_creates_a_contact():
    inbound_message_apply(event=inbound("+14155550199", "who is this?"))
    contact = Contact.objects.get(phone="+14155550199")
    assert contact.created_via == "inbound" and contact.external_id is None
    assert Touchpoint.objects.get(contact=contact).kind == "replied"


def test_whatsapp_reply_records_the_window_and_fills_the_number():
    contact = ContactFactory(phone="+14155552680", whatsapp="")
    inbound_message_apply(event=inbound("+14155552680", "hi", "whatsapp", profile_name="Ada"))
    contact.refresh_from_db()
    assert contact.whatsapp == "+14155552680"
    assert contact.last_inbound_whatsapp_at == NOW


def test_stop_then_start_by_sms_with_history():
    contact = ContactFactory()
    services.consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    inbound_message_apply(event=inbound(contact.phone, " Stop. "))
    assert consent_status(contact=contact, channel="sms") == "unsubscribed"
    assert services.message_create(contact=contact, channel="sms", body="x")[0].status == "skipped"
    inbound_message_apply(event=inbound(contact.phone, "START"))
    assert consent_status(contact=contact, channel="sms") == "subscribed"
    history = list(
        ConsentChange.objects.filter(contact=contact).order_by("id").values_list("status", "source")
    )
    assert history == [
        ("subscribed", "api"),
        ("unsubscribed", "keyword"),
        ("subscribed", "keyword"),
    ]
    assert all(c.message_id for c in ConsentChange.objects.filter(source="keyword"))
    # Email consent is untouched by an SMS STOP.
    assert consent_status(contact=contact, channel="email") == "unknown"


def test_stop_please_is_not_a_keyword():
    contact = ContactFactory()
    inbound_message_apply(event=inbound(contact.phone, "STOP please"))
    assert consent_status(contact=contact, channel="sms") == "unknown"


def test_email_reply_matched_by_token_then_in_reply_to_then_sender():
    contact = ContactFactory(email="ada@example.com")
    first = outbound(contact, "email")
    second = outbound(contact, "email")
    latest = outbound(contact, "email")

    by_token = inbound_message_apply(
        event=inbound(
            "someone-else@example.com",
            "Re",
            "email",
            provider="sendgrid",
            reply_token_message_id=str(first.pk),
        )
    )
    assert by_token.in_reply_to_id == first.pk and by_token.contact_id == contact.pk

    by_header = inbound_message_apply(
        event=inbound(
            "ada@example.com",
            "Re",
            "email",
            provider="sendgrid",
            in_reply_to=(f"<{second.pk}@reply.example>",),
        )
    )
    assert by_header.in_reply_to_id == second.pk

    by_sender = inbound_message_apply(
        event=inbound("ADA@example.com", "Re", "email", provider="sendgrid")
    )
    assert by_sender.in_reply_to_id == latest.pk
    assert reply_address(first.pk)  # the address the token came from is well-formed


def test_attachments_metadata_is_kept():
    contact = ContactFactory()
    message = inbound_message_apply(
        event=inbound(
            contact.phone,
            "photo",
            attachments=(Attachment("a.jpg", "image/jpeg", 0, "https://media.example/a.jpg"),),
        )
    )
    assert message.media == [
        {
            "filename": "a.jpg",
            "content_type": "image/jpeg",
            "size": 0,
            "url": "https://media.example/a.jpg",
        }
    ]
