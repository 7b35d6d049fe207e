"""GDPR export and erasure, on a contact with real activity: sends through the real SDKs to
the provider simulator, signed status callbacks and engagement events, replies by SMS,
WhatsApp and email through the signed inbound webhooks, consent changes, a post-purchase
journey with an answered NPS survey, admin history and outbound webhook deliveries."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import time_machine
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from twilio.request_validator import RequestValidator
from urllib3 import encode_multipart_formdata

from channels_app.models import WebhookEvent
from channels_app.reply_token import reply_address
from channels_app.simulator.callbacks import sendgrid_events_post
from channels_app.simulator.sendgrid_api import event_payload
from journeys import engine
from journeys.blueprints import install_blueprints
from journeys.models import Enrollment, Event, Journey, SurveyResponse
from journeys.services import event_ingest
from journeys.stats import journey_stats
from messaging import services
from messaging.models import (
    ConsentChange,
    ConsentSource,
    Contact,
    Conversation,
    Message,
    Touchpoint,
)
from messaging.privacy import TOUCHPOINT_SAFE_KEYS, contact_erase, contact_export
from messaging.status import MessageStatus

pytestmark = pytest.mark.django_db

EMAIL = "augusta.byronique@example.org"
ALIAS = "a.byronique@work.example"  # replies from here, matched by the signed reply token
PHONE = "+14155550199"
WHATSAPP = "+14155550198"
ATTRIBUTE = "lapsang-7731"
# Distinctive words the customer wrote: an SMS answer, a WhatsApp message, an email reply.
SMS_WORD, WHATSAPP_WORD, EMAIL_WORD = "marmalade", "marzipan", "quinoa"
# Everything that identifies Augusta; none of it may survive erasure in any column.
PERSONAL = [
    EMAIL,
    ALIAS,
    PHONE[2:],  # the digits, however a number was written (+1…, whatsapp:+1…, %2B1…)
    WHATSAPP[2:],
    "Augusta",
    "Byronique",
    ATTRIBUTE,
    SMS_WORD,
    WHATSAPP_WORD,
    EMAIL_WORD,
]
TWILIO_STATUS = "/webhooks/twilio/status/"
TWILIO_INBOUND = "/webhooks/twilio/inbound/"
SENDGRID_EVENTS = "/webhooks/sendgrid/events/"
SENDGRID_INBOUND = "/webhooks/sendgrid/inbound/"


# --- Driving the real webhooks ---------------------------------------------------------


@dataclass
class Webhooks:
    """Signed provider webhooks posted through the Django test client, on-commit work run."""

    client: Any
    capture: Any
    sids: Any = field(default_factory=lambda: iter(range(10_000)))

    def _ok(self, response) -> None:
        assert response.status_code == 200, response.content

    def twilio(self, path: str, params: dict[str, str]) -> None:
        url = settings.PUBLIC_BASE_URL + path
        signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        with self.capture(execute=True):
            self._ok(
                self.client.post(
                    path,
                    urlencode(params),
                    content_type="application/x-www-form-urlencoded",
                    HTTP_X_TWILIO_SIGNATURE=signature,
                )
            )

    def twilio_status(self, message: Message, status: str) -> None:
        self.twilio(
            f"{TWILIO_STATUS}?mid={message.pk}",
            {
                "MessageSid": message.provider_message_id,
                "MessageStatus": status,
                "AccountSid": settings.TWILIO_ACCOUNT_SID,
                "From": settings.TWILIO_SMS_FROM,
                "To": message.to_address,
            },
        )

    def text(self, sender: str, body: str, *, whatsapp: bool = False, profile: str = "") -> None:
        """The customer texts us (SMS, or WhatsApp with a profile name)."""
        params = {
            "MessageSid": f"SMpriv{next(self.sids):026d}",
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "From": f"whatsapp:{sender}" if whatsapp else sender,
            "To": f"whatsapp:{settings.TWILIO_WHATSAPP_FROM}"
            if whatsapp
            else settings.TWILIO_SMS_FROM,
            "Body": body,
            "NumMedia": "0",
        }
        if profile:
            params["ProfileName"] = profile
        self.twilio(TWILIO_INBOUND, params)

    def sendgrid_events(self, events: list[dict[str, Any]]) -> None:
        post = sendgrid_events_post(
            settings.SIMULATOR_SENDGRID_SIGNING_KEY,
            settings.PUBLIC_BASE_URL + SENDGRID_EVENTS,
            events,
        )
        body, headers = post.build()
        with self.capture(execute=True):
            self._ok(
                self.client.post(
                    SENDGRID_EVENTS,
                    body,
                    content_type="application/json",
                    HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=headers[
                        "X-Twilio-Email-Event-Webhook-Timestamp"
                    ],
                    HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=headers[
                        "X-Twilio-Email-Event-Webhook-Signature"
                    ],
                )
            )

    def email_reply(self, *, sender: str, name: str, answered: Message, text: str) -> None:
        """An email reply through Inbound Parse, to the signed Reply-To of `answered`."""
        to = reply_address(answered.pk)
        headers = (
            "Message-ID: <CAFprivacy1@mail.work.example>\n"
            f"In-Reply-To: <{answered.pk}@{settings.INBOUND_EMAIL_DOMAIN}>\n"
            f'From: "{name}" <{sender}>\n'
            f"To: {to}\n"
            f"Subject: Re: {answered.subject}\n"
            "Date: Mon, 3 Feb 2025 10:00:00 +0000\n"
        )
        body, content_type = encode_multipart_formdata(
            {
                "headers": headers,
                "from": f'"{name}" <{sender}>',
                "to": to,
                "subject": f"Re: {answered.subject}",
                "text": text,
                "envelope": json.dumps({"to": [to], "from": sender}),
            }
        )
        secret = base64.b64encode(f"touchline:{settings.INBOUND_PARSE_SECRET}".encode()).decode()
        with self.capture(execute=True):
            self._ok(
                self.client.post(
                    SENDGRID_INBOUND,
                    body,
                    content_type=content_type,
                    HTTP_AUTHORIZATION=f"Basic {secret}",
                )
            )


@pytest.fixture
def hooks(client, django_capture_on_commit_callbacks) -> Webhooks:
    return Webhooks(client=client, capture=django_capture_on_commit_callbacks)


def send(contact: Contact, channel: str, **content: Any) -> Message:
    """message_create + message_deliver, as the delivery task does, to the simulator."""
    message, _ = services.message_create(contact=contact, channel=channel, **content)
    assert services.message_deliver(message_id=message.pk).result == "sent"
    message.refresh_from_db()
    return message


def outbound_tables() -> bool:
    """The outbound app is installed and migrated (it is built alongside this feature)."""
    if not apps.is_installed("outbound"):
        return False
    try:
        model = apps.get_model("outbound", "WebhookDelivery")
    except LookupError:
        return False
    return model._meta.db_table in connection.introspection.table_names()


# --- The customer ---------------------------------------------------------------------


@dataclass
class World:
    contact: Contact
    other: Contact
    journey: Journey
    sms: Message
    email: Message
    stop: Message
    deliveries: int


@pytest.fixture
def world(simulator, hooks, django_capture_on_commit_callbacks, settings) -> World:
    """Augusta's whole history, and Bob, who must come out of her erasure untouched."""
    capture = django_capture_on_commit_callbacks
    install_blueprints(activate=True)
    journey = Journey.objects.get(slug="post-purchase", status=Journey.Status.ACTIVE)
    deliveries = 0
    if outbound_tables():
        from outbound import services as outbound_services

        # Loopback is reachable only through the allow-list; port 9 refuses at once.
        settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1:9"]
        outbound_services.subscription_create(
            url="http://127.0.0.1:9/touchline-hooks",  # refused at once: nothing leaves
            event_types=["message.replied", "contact.unsubscribed", "survey.answered"],
        )
    with capture(execute=True):
        contact, _ = services.contact_upsert(
            external_id="cust-augusta",
            data={
                "first_name": "Augusta",
                "last_name": "Byronique",
                "email": EMAIL,
                "phone": PHONE,
                "whatsapp": WHATSAPP,
                "locale": "en-GB",
                "timezone": "Europe/London",
                "attributes": {"favourite_tea": ATTRIBUTE, "plan": "pro"},
                "consent": {"sms": "subscribed", "email": "subscribed"},
            },
        )
        services.consent_set(
            contact=contact,
            channel="whatsapp",
            status="subscribed",
            source=ConsentSource.API,
            note="Augusta asked for WhatsApp on the phone",
        )
    # Staff edited her in admin: the admin log names her.
    user = get_user_model().objects.create_superuser("staff", "staff@shop.example", "pw")
    request = RequestFactory().post("/admin/")
    request.user = user
    admin.site._registry[Contact].log_change(request, contact, "Changed locale.")

    sms = send(contact, "sms", body="Hi {{ contact.first_name }}, your parcel is on its way")
    hooks.twilio_status(sms, "delivered")
    email = send(
        contact,
        "email",
        subject="Your order, {{ contact.first_name }}",
        html_body='<p>Hi {{ contact.first_name }} {{ contact.last_name }}</p><p><a href="'
        'https://shop.example/account?u={{ contact.email }}">Your account</a></p>',
    )
    [record] = simulator.messages(touchline_id=str(email.pk))
    hooks.sendgrid_events([event_payload(record, name) for name in ("delivered", "open", "click")])
    hooks.email_reply(
        sender=ALIAS,
        name="Augusta Byronique",
        answered=email,
        text=f"Lovely! Please add the {EMAIL_WORD} salad next time.\n",
    )
    hooks.text(WHATSAPP, f"Is my {WHATSAPP_WORD} parcel coming?", whatsapp=True, profile="Augusta")

    # The post-purchase journey: thank-you now, the NPS question three days later, answered.
    start = timezone.now()
    with capture(execute=True):
        event_ingest(
            name="order.completed",
            contact=contact,
            properties={"order_id": "1001", "gift_note": "Happy birthday Augusta"},
        )
    with time_machine.travel(start + dt.timedelta(days=3, minutes=1), tick=True):
        with capture(execute=True):
            assert engine.run_due() == 1
        hooks.text(PHONE, f"9 - the {SMS_WORD} hamper was perfect")
        hooks.text(PHONE, "STOP")
    stop = Message.objects.get(contact=contact, body="STOP")

    # Bob, another customer with his own traffic.
    other, _ = services.contact_upsert(
        external_id="cust-bob", data={"first_name": "Bob", "phone": "+14155550123"}
    )
    bob_sms = send(other, "sms", body="Hi Bob, your order shipped")
    hooks.twilio_status(bob_sms, "delivered")
    hooks.text("+14155550123", "Thanks, Bob here")

    if outbound_tables():
        from outbound.models import WebhookAttempt, WebhookDelivery

        # Her replies, opt-out and answer were published to the backend's subscription.
        mine = WebhookDelivery.objects.filter(payload__data__contact__id=contact.pk)
        deliveries = mine.count()
        assert deliveries >= 3
        # A receiver that echoes what it got: its response is kept with the attempt.
        first = mine.first()
        WebhookAttempt.objects.create(
            delivery=first,
            attempted_at=timezone.now(),
            status_code=200,
            response_body=json.dumps(first.payload)[:256],  # the excerpt limit
        )

    contact.refresh_from_db()
    assert SurveyResponse.objects.get(contact=contact).score == 9
    assert Enrollment.objects.get(contact=contact).state == Enrollment.State.COMPLETED
    return World(contact, other, journey, sms, email, stop, deliveries)


# --- The column scan ------------------------------------------------------------------


def text_columns(model: type[models.Model]) -> tuple[list[str], list[str]]:
    fields = [f for f in model._meta.concrete_fields if not f.is_relation]
    texts = [f.attname for f in fields if isinstance(f, models.CharField | models.TextField)]
    jsons = [f.attname for f in fields if isinstance(f, models.JSONField)]
    return texts, jsons


def where_found(needles: list[str]) -> dict[str, list[str]]:
    """needle → ["app.Model.column", …]: every text and JSON column of every model."""
    tables = set(connection.introspection.table_names())
    found: dict[str, list[str]] = {}
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or not meta.managed or meta.db_table not in tables:
            continue
        texts, jsons = text_columns(model)
        if not texts and not jsons:
            continue
        rows = model._base_manager.annotate(
            **{f"_json_{name}": Cast(name, TextField()) for name in jsons}
        )
        columns = texts + [f"_json_{name}" for name in jsons]
        for needle in needles:
            anywhere = Q()
            for column in columns:
                anywhere |= Q(**{f"{column}__icontains": needle})
            if not rows.filter(anywhere).exists():
                continue
            for column in columns:
                if rows.filter(**{f"{column}__icontains": needle}).exists():
                    found.setdefault(needle, []).append(
                        f"{meta.label}.{column.removeprefix('_json_')}"
                    )
    return found


# --- Export ---------------------------------------------------------------------------


def test_export_has_every_section_with_the_stored_values(world):
    contact = world.contact
    data = contact_export(contact=contact)
    assert json.loads(json.dumps(data)) == data  # JSON as it is, no custom encoder needed

    profile = data["profile"]
    assert (profile["external_id"], profile["email"], profile["phone"], profile["whatsapp"]) == (
        "cust-augusta",
        EMAIL,
        PHONE,
        WHATSAPP,
    )
    assert (profile["first_name"], profile["last_name"], profile["locale"]) == (
        "Augusta",
        "Byronique",
        "en-GB",
    )
    assert profile["attributes"] == {"favourite_tea": ATTRIBUTE, "plan": "pro"}
    assert profile["last_inbound_whatsapp_at"].endswith("Z")
    assert profile["erased_at"] is None

    assert {k: v["status"] for k, v in data["consent"].items()} == {
        "sms": "unsubscribed",
        "email": "subscribed",
        "whatsapp": "subscribed",
    }
    history = data["consent_history"]
    assert [(c["channel"], c["status"], c["source"]) for c in history] == [
        ("sms", "subscribed", "api"),
        ("email", "subscribed", "api"),
        ("whatsapp", "subscribed", "api"),
        ("sms", "unsubscribed", "keyword"),
    ]
    assert history[2]["note"] == "Augusta asked for WhatsApp on the phone"
    assert history[3]["message"] == str(world.stop.pk)

    messages = {m["id"]: m for m in data["messages"]}
    assert len(messages) == Message.objects.filter(contact=contact).count() == 9
    assert sum(m["direction"] == "inbound" for m in messages.values()) == 4
    sms = messages[str(world.sms.pk)]
    assert (sms["channel"], sms["direction"], sms["status"], sms["to_address"]) == (
        "sms",
        "outbound",
        "delivered",
        PHONE,
    )
    assert sms["body"] == "Hi Augusta, your parcel is on its way"
    assert sms["provider_message_id"] == world.sms.provider_message_id
    assert sms["sent_at"].endswith("Z") and sms["delivered_at"].endswith("Z")
    email = messages[str(world.email.pk)]
    assert email["subject"] == "Your order, Augusta" and "Augusta" in email["html_body"]
    # The stored HTML has the short link; the export names the URL it stands for.
    [link] = email["links"]
    assert EMAIL in link["url"] and "/l/" in email["html_body"]
    [reply] = [m for m in messages.values() if m["from_address"] == ALIAS]
    assert reply["in_reply_to"] == str(world.email.pk) and EMAIL_WORD in reply["body"]
    [answer] = [m for m in messages.values() if SMS_WORD in m["body"]]
    assert answer["direction"] == "inbound" and answer["received_at"].endswith("Z")

    touchpoints = data["touchpoints"]
    assert len(touchpoints) == Touchpoint.objects.filter(contact=contact).count()
    kinds = {t["kind"] for t in touchpoints}
    assert {"queued", "sent", "delivered", "opened", "clicked", "replied"} <= kinds
    assert {"consent_changed", "event", "journey_entered", "survey_answered"} <= kinds
    [click] = [t for t in touchpoints if t["kind"] == "clicked"]
    # SendGrid reports the click on the tracked short link; the link's row holds the URL.
    assert click["message"] == str(world.email.pk) and click["data"]["url"] in email["html_body"]

    events = data["events"]
    assert len(events) == Event.objects.filter(contact=contact).count()
    [order] = [e for e in events if e["name"] == "order.completed"]
    assert order["properties"] == {"order_id": "1001", "gift_note": "Happy birthday Augusta"}
    assert {"message.replied", "survey.answered", "survey.promoter"} <= {e["name"] for e in events}

    [enrollment] = data["enrollments"]
    assert (enrollment["journey"], enrollment["state"]) == ("post-purchase", "completed")
    assert enrollment["context"]["steps"]["nps"]["score"] == 9
    assert enrollment["ended_at"].endswith("Z")
    [survey] = data["survey_responses"]
    assert (survey["journey"], survey["step"], survey["score"], survey["nps_category"]) == (
        "post-purchase",
        "nps",
        9,
        "promoter",
    )
    assert survey["status"] == "answered" and SMS_WORD in survey["raw_answer"]

    assert data["conversation"]["status"] == Conversation.Status.NEEDS_REPLY
    # Her callbacks and inbound messages; Bob's stay out of her export.
    hooks = data["provider_webhooks"]
    assert {(w["provider"], w["kind"]) for w in hooks} == {
        ("twilio", "status"),
        ("twilio", "inbound"),
        ("sendgrid", "event"),
        ("sendgrid", "inbound"),
    }
    assert len(hooks) == WebhookEvent.objects.count() - 2
    assert "Bob" not in json.dumps(data)
    assert len(data["webhook_deliveries"]) == world.deliveries


def build_history(contact: Contact, n: int) -> None:
    """n of everything, straight through the services (no provider calls)."""
    for i in range(n):
        services.message_create(contact=contact, channel="sms", body=f"Message {i}")
        services.consent_set(
            contact=contact,
            channel="sms",
            status="unsubscribed" if i % 2 else "subscribed",
            source=ConsentSource.API,
        )
        event_ingest(name="order.completed", contact=contact, properties={"order_id": str(i)})


def test_export_query_count_does_not_grow_with_the_history(django_assert_max_num_queries):
    install_blueprints(activate=True)
    small, _ = services.contact_upsert(external_id="small", data={"phone": "+14155550111"})
    large, _ = services.contact_upsert(external_id="large", data={"phone": "+14155550112"})
    build_history(small, 1)
    build_history(large, 8)
    assert Enrollment.objects.filter(contact=large).count() == 8

    with CaptureQueriesContext(connection) as few:
        contact_export(contact=small)
    # (13: one more since the export lists topic subscriptions)
    with django_assert_max_num_queries(13), CaptureQueriesContext(connection) as many:
        data = contact_export(contact=large)
    assert len(many) == len(few)
    assert len(data["messages"]) == 8 and len(data["enrollments"]) == 8


# --- Erasure --------------------------------------------------------------------------


def test_erasure_leaves_no_personal_data_in_any_column(world):
    before = where_found(PERSONAL)
    assert set(before) == set(PERSONAL), "the scan must see every string before erasure"

    counts = contact_erase(contact=world.contact, actor="api:test")

    assert where_found(PERSONAL) == {}
    assert counts["contacts"] == 1
    assert counts["messages"] == 9
    assert counts["consent_changes"] == 2  # the WhatsApp note and "texted 'STOP'"
    assert counts["events"] == Event.objects.filter(contact=world.contact).count()
    assert (counts["enrollments"], counts["survey_responses"]) == (1, 1)
    assert counts["webhook_events"] == WebhookEvent.objects.count() - 2
    assert counts["admin_log_entries"] == 1
    assert counts.get("webhook_deliveries", 0) == world.deliveries


def test_erasure_keeps_anonymised_rows_and_the_statistics(world):
    contact = world.contact
    stats = journey_stats(world.journey)
    timeline = Touchpoint.objects.filter(contact=contact).order_by("pk")
    kinds = list(timeline.values_list("kind", "message_id", "occurred_at"))
    statuses = dict(Message.objects.filter(contact=contact).values_list("pk", "status"))

    contact_erase(contact=contact)

    assert journey_stats(world.journey) == stats
    assert stats["nps"]["promoters"] == 1 and stats["enrollments"]["completed"] == 1
    contact.refresh_from_db()
    assert contact.erased_at is not None and contact.external_id is None
    assert (contact.email, contact.phone, contact.whatsapp, contact.first_name) == ("", "", "", "")
    assert (contact.attributes, contact.timezone, contact.last_inbound_whatsapp_at) == (
        {},
        "UTC",
        None,
    )
    assert dict(Message.objects.filter(contact=contact).values_list("pk", "status")) == statuses
    sms = Message.objects.get(pk=world.sms.pk)
    assert (sms.to_address, sms.body, sms.metadata) == ("", "", {})
    assert sms.provider_message_id == world.sms.provider_message_id and sms.sent_at
    reply = Message.objects.get(pk=world.stop.pk)
    assert reply.in_reply_to_id is not None and reply.received_at is not None
    # Touchpoints keep their kind, message and order, and only whitelisted data.
    after = list(timeline.values_list("kind", "message_id", "occurred_at"))
    assert after[:-1] == kinds and after[-1][0] == "contact_erased"
    for data in Touchpoint.objects.filter(contact=contact).values_list("data", flat=True):
        assert set(data) <= TOUCHPOINT_SAFE_KEYS
    replied = Touchpoint.objects.filter(contact=contact, kind="replied").first()
    assert "body" not in replied.data and replied.data["inbound_message_id"]
    # Consent rows stay (with their source and message), without the note.
    assert ConsentChange.objects.filter(contact=contact).count() == 4
    assert set(ConsentChange.objects.filter(contact=contact).values_list("note", flat=True)) == {""}
    survey = SurveyResponse.objects.get(contact=contact)
    assert (survey.raw_answer, survey.score, survey.nps_category) == ("", 9, "promoter")
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.context, enrollment.state) == ({}, "completed")
    properties = Event.objects.filter(contact=contact).values_list("properties", flat=True)
    assert properties and all(p == {} for p in properties)
    assert Conversation.objects.filter(contact=contact).exists()
    # The webhook rows stay as the dedupe gate, emptied.
    assert WebhookEvent.objects.filter(payload={}).count() == WebhookEvent.objects.count() - 2
    # The export now shows what is left: nothing personal.
    data = contact_export(contact=contact)
    assert data["profile"]["erased_at"] and data["profile"]["email"] == ""
    assert data["provider_webhooks"] and {
        json.dumps(w["payload"]) for w in data["provider_webhooks"]
    } == {"{}"}


def test_erasure_leaves_other_contacts_alone(world):
    bob = world.other
    messages = list(Message.objects.filter(contact=bob).values())
    touchpoints = list(Touchpoint.objects.filter(contact=bob).values())
    payloads = list(WebhookEvent.objects.exclude(payload={}).values_list("payload", flat=True))

    contact_erase(contact=world.contact)

    assert list(Message.objects.filter(contact=bob).values()) == messages
    assert list(Touchpoint.objects.filter(contact=bob).values()) == touchpoints
    bob_hooks = [p for p in payloads if "Bob" in json.dumps(p) or "4155550123" in json.dumps(p)]
    assert len(bob_hooks) == 2
    assert sorted(
        map(json.dumps, WebhookEvent.objects.exclude(payload={}).values_list("payload", flat=True))
    ) == sorted(map(json.dumps, bob_hooks))
    bob.refresh_from_db()
    assert (bob.external_id, bob.first_name, bob.erased_at) == ("cust-bob", "Bob", None)


def test_a_second_erasure_changes_nothing(world):
    contact_erase(contact=world.contact)
    touchpoints = Touchpoint.objects.count()
    erased_at = Contact.objects.get(pk=world.contact.pk).erased_at

    counts = contact_erase(contact=world.contact, actor="api:again")

    assert sum(counts.values()) == 0, counts
    assert Touchpoint.objects.count() == touchpoints
    assert Contact.objects.get(pk=world.contact.pk).erased_at == erased_at
    assert where_found(PERSONAL) == {}


def test_erased_contact_is_not_messaged_and_a_new_text_makes_a_new_contact(world, simulator, hooks):
    contact = world.contact
    queued, _ = services.message_create(contact=contact, channel="email", subject="Hi", body="x")
    before = len(simulator.messages())

    contact_erase(contact=contact)

    assert services.message_deliver(message_id=queued.pk).result == "skipped"
    queued.refresh_from_db()
    assert queued.status == MessageStatus.SKIPPED and queued.error_code == "erased"
    assert len(simulator.messages()) == before
    hooks.text(PHONE, "START")
    newcomer = Message.objects.get(body="START").contact
    assert newcomer.pk != contact.pk and newcomer.phone == PHONE


def test_erasure_ends_a_waiting_enrollment(simulator, django_capture_on_commit_callbacks):
    install_blueprints(activate=True)
    contact, _ = services.contact_upsert(
        external_id="waiting", data={"first_name": "Wanda", "phone": "+14155550177"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=contact, properties={"order_id": "5"})
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == Enrollment.State.WAITING
    sent = len(simulator.messages())

    counts = contact_erase(contact=contact)

    assert counts["enrollments_exited"] == 1
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.next_run_at, enrollment.context) == ("exited", None, {})
    assert Touchpoint.objects.filter(contact=contact, kind="journey_exited").count() == 1
    later = timezone.now() + dt.timedelta(days=4)
    with time_machine.travel(later, tick=True), django_capture_on_commit_callbacks(execute=True):
        assert engine.run_due() == 0
    assert len(simulator.messages()) == sent


def test_api_export_then_erase(world, api):
    response = api.get("/api/v1/contacts/cust-augusta/export/")
    assert response.status_code == 200
    assert response.json()["profile"]["email"] == EMAIL

    response = api.delete("/api/v1/contacts/cust-augusta/")
    assert response.status_code == 200, response.content
    assert response.json()["erased"]["messages"] == 9
    assert api.get("/api/v1/contacts/cust-augusta/").status_code == 404
    [erased] = Touchpoint.objects.filter(contact=world.contact, kind="contact_erased")
    assert erased.data["actor"].startswith("api:")
