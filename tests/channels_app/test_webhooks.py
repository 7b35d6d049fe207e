"""Webhook views: verification first, then parsing into channels_app.events, deduplication,
and publication on the two signals. Only this file's collecting receivers are connected, so
the assertions are about what the views publish, not what messaging does with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection
from django.test import Client
from twilio.request_validator import RequestValidator

from channels_app.events import (
    EventType,
    InboundEvent,
    TrackingEvent,
    inbound_received,
    tracking_received,
)
from channels_app.models import WebhookEvent
from channels_app.reply_token import reply_address

pytestmark = pytest.mark.django_db

PUBLIC = "https://touchline.example.com"
TWILIO_TOKEN = "test-twilio-auth-token"
INBOUND_SECRET = "s3cret-inbound-parse"
HELP_TEXT = "Acme & Co <support>: reply STOP to opt out."

STATUS_PATH = "/webhooks/twilio/status/"
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound/"
EVENTS_PATH = "/webhooks/sendgrid/events/"
PARSE_PATH = "/webhooks/sendgrid/inbound/"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


# --- fixtures -------------------------------------------------------------------------


@dataclass
class Published:
    tracking: list[TrackingEvent] = field(default_factory=list)
    inbound: list[InboundEvent] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        return not self.tracking and not self.inbound


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    """Replace every receiver of the two signals with collectors for the test's duration."""
    seen = Published()

    def on_tracking(sender: Any, *, events: list[TrackingEvent], **_: Any) -> None:
        seen.tracking.extend(events)

    def on_inbound(sender: Any, *, event: InboundEvent, **_: Any) -> None:
        seen.inbound.append(event)

    for signal in (tracking_received, inbound_received):
        monkeypatch.setattr(signal, "receivers", [])
        signal.sender_receivers_cache.clear()
    tracking_received.connect(on_tracking, weak=False)
    inbound_received.connect(on_inbound, weak=False)
    yield seen
    for signal in (tracking_received, inbound_received):
        signal.sender_receivers_cache.clear()


@pytest.fixture(autouse=True)
def webhook_settings(settings) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.HELP_TEXT = HELP_TEXT
    settings.INBOUND_PARSE_SECRET = INBOUND_SECRET
    settings.INBOUND_EMAIL_DOMAIN = "reply.touchline.example"
    settings.SENDGRID_WEBHOOK_MAX_AGE_SECONDS = 300


def assert_nothing_kept(published: Published) -> None:
    assert published.nothing
    assert WebhookEvent.objects.count() == 0


def detail(response) -> str:
    assert response["Content-Type"].startswith("application/json")
    return response.json()["detail"]


# --- Twilio ---------------------------------------------------------------------------


def twilio_post(
    client: Client,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    token: str = TWILIO_TOKEN,
    signature: str | None = None,
    signed_params: dict[str, str] | None = None,
):
    url = signed_url if signed_url is not None else PUBLIC + path
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, signed_params or params)
    extra = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(
        path, data=urlencode(params), content_type="application/x-www-form-urlencoded", **extra
    )


def status_params(status: str = "delivered", **overrides: str) -> dict[str, str]:
    params = {
        "MessageSid": "SM" + "a" * 32,
        "MessageStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": "+14155552671",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return params


def inbound_params(body: str = "Thanks!", **overrides: str) -> dict[str, str]:
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "+14155552671",
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }
    params.update(overrides)
    return params


def test_twilio_signature_test_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    validator = RequestValidator("12345")
    assert validator.compute_signature(url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert validator.validate(url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not validator.validate(url, {**params, "Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def test_twilio_status_accepted(client: Client, published: Published) -> None:
    mid = uuid.uuid4()
    path = f"{STATUS_PATH}?mid={mid}"
    response = twilio_post(
        client, path, status_params("undelivered", ErrorCode="30003", ErrorMessage="Unreachable")
    )

    assert response.status_code == 200
    assert response.content == b""
    [event] = published.tracking
    assert event.event_type == EventType.UNDELIVERED
    assert event.provider == "twilio"
    assert event.channel == "sms"
    assert event.message_id == str(mid)
    assert event.provider_message_id == "SM" + "a" * 32
    assert event.event_id == f"SM{'a' * 32}:undelivered"
    assert event.error_code == "30003"
    assert event.reason == "Unreachable"
    assert event.recipient == "+14155552671"
    assert event.provider_status == "undelivered"
    assert event.raw["MessageStatus"] == "undelivered"
    row = WebhookEvent.objects.get()
    assert (row.provider, row.kind, row.event_id) == ("twilio", "status", event.event_id)
    assert row.payload["query"] == {"mid": str(mid)}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", EventType.QUEUED),
        ("accepted", EventType.QUEUED),
        ("scheduled", EventType.QUEUED),
        ("sending", None),
        ("sent", EventType.SENT),
        ("delivered", EventType.DELIVERED),
        ("undelivered", EventType.UNDELIVERED),
        ("failed", EventType.FAILED),
        ("read", EventType.READ),
        ("canceled", EventType.FAILED),
        ("partially_delivered", EventType.DELIVERED),
        ("receiving", None),
        ("received", None),
        ("some_future_status", None),
    ],
)
def test_twilio_status_mapping(
    client: Client, published: Published, status: str, expected: str | None
) -> None:
    response = twilio_post(client, f"{STATUS_PATH}?mid={uuid.uuid4()}", status_params(status))

    assert response.status_code == 200
    if expected is None:
        assert published.tracking == []
    else:
        assert [e.event_type for e in published.tracking] == [expected]
    # Accepted callbacks are recorded either way.
    assert WebhookEvent.objects.filter(event_id=f"SM{'a' * 32}:{status}").exists()


def test_twilio_status_whatsapp_channel(client: Client, published: Published) -> None:
    params = status_params(
        "read", From="whatsapp:+14155238886", To="whatsapp:+14155552671", ChannelPrefix="whatsapp"
    )
    response = twilio_post(client, f"{STATUS_PATH}?mid={uuid.uuid4()}", params)

    assert response.status_code == 200
    [event] = published.tracking
    assert (event.channel, event.event_type, event.recipient) == (
        "whatsapp",
        EventType.READ,
        "+14155552671",
    )


@pytest.mark.parametrize("mid", ["not-a-uuid", "", "1234"])
def test_twilio_status_without_a_usable_mid(client: Client, published: Published, mid) -> None:
    path = f"{STATUS_PATH}?mid={mid}" if mid else STATUS_PATH
    response = twilio_post(client, path, status_params("sent"))

    assert response.status_code == 200
    [event] = published.tracking
    assert event.message_id == ""
    assert event.provider_message_id == "SM" + "a" * 32


def test_twilio_status_duplicate_is_published_once(client: Client, published: Published) -> None:
    path = f"{STATUS_PATH}?mid={uuid.uuid4()}"
    first = twilio_post(client, path, status_params("delivered"))
    second = twilio_post(client, path, status_params("delivered"))
    other_status = twilio_post(client, path, status_params("read"))

    assert (first.status_code, second.status_code, other_status.status_code) == (200, 200, 200)
    assert [e.event_type for e in published.tracking] == [EventType.DELIVERED, EventType.READ]
    assert WebhookEvent.objects.count() == 2


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_forged_signature_rejected(client: Client, published: Published, path) -> None:
    params = status_params() if path == STATUS_PATH else inbound_params()
    response = twilio_post(client, path, params, token="not-the-token")

    assert response.status_code == 403
    assert "X-Twilio-Signature" in detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_tampered_params_rejected(client: Client, published: Published, path) -> None:
    params = status_params() if path == STATUS_PATH else inbound_params("hello")
    tampered = {**params, "MessageStatus": "failed", "Body": "STOP"}
    response = twilio_post(client, path, tampered, signed_params=params)

    assert response.status_code == 403
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_missing_signature_rejected(client: Client, published: Published, path) -> None:
    params = status_params() if path == STATUS_PATH else inbound_params()
    response = twilio_post(client, path, params, signature="")

    assert response.status_code == 403
    assert "Missing" in detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_signature_over_internal_url_rejected(
    client: Client, published: Published, path
) -> None:
    """Behind a TLS proxy the internal URL differs from what Twilio signed."""
    params = status_params() if path == STATUS_PATH else inbound_params()
    response = twilio_post(client, path, params, signed_url="http://testserver" + path)

    assert response.status_code == 403
    assert_nothing_kept(published)


def test_twilio_signature_covers_the_query_string(client: Client, published: Published) -> None:
    signed_for = f"{PUBLIC}{STATUS_PATH}?mid={uuid.uuid4()}"
    response = twilio_post(
        client, f"{STATUS_PATH}?mid={uuid.uuid4()}", status_params(), signed_url=signed_for
    )

    assert response.status_code == 403
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_without_auth_token_refuses(
    client: Client, published: Published, settings, path
) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    params = status_params() if path == STATUS_PATH else inbound_params()
    response = twilio_post(client, path, params, token="")

    assert response.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH])
def test_twilio_wrong_content_type(client: Client, published: Published, path) -> None:
    response = client.post(
        path, data=json.dumps(status_params()), content_type="application/json",
        HTTP_X_TWILIO_SIGNATURE="x",
    )  # fmt: skip

    assert response.status_code == 415
    assert_nothing_kept(published)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (STATUS_PATH, {"MessageStatus": "delivered"}),
        (STATUS_PATH, {"MessageSid": "SM1"}),
        (STATUS_PATH, {"AccountSid": "AC1"}),
        (TWILIO_INBOUND_PATH, {"From": "+14155552671", "Body": "hi"}),
    ],
)
def test_twilio_signed_but_incomplete_is_400(
    client: Client, published: Published, path, params
) -> None:
    response = twilio_post(client, path, params)

    assert response.status_code == 400
    assert detail(response)
    assert_nothing_kept(published)


def test_twilio_oversized_body_is_413(client: Client, published: Published, settings) -> None:
    params = inbound_params("x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10))
    response = twilio_post(client, TWILIO_INBOUND_PATH, params, signature="whatever")

    assert response.status_code == 413
    assert_nothing_kept(published)


@pytest.mark.parametrize("path", [STATUS_PATH, TWILIO_INBOUND_PATH, EVENTS_PATH, PARSE_PATH])
@pytest.mark.parametrize("method", ["get", "put", "delete", "head", "options"])
def test_only_post_is_allowed(client: Client, published: Published, path, method) -> None:
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert_nothing_kept(published)


def test_receiver_failure_rolls_back_and_answers_500(
    client: Client, published: Published, caplog
) -> None:
    """The provider must retry: nothing may be recorded as seen when applying failed."""

    def broken(sender: Any, **_: Any) -> None:
        raise RuntimeError("database on fire")

    tracking_received.connect(broken, weak=False)
    path = f"{STATUS_PATH}?mid={uuid.uuid4()}"
    try:
        response = twilio_post(client, path, status_params("delivered"))
    finally:
        tracking_received.disconnect(broken)

    assert response.status_code == 500
    assert WebhookEvent.objects.count() == 0
    assert "failed to record or apply" in caplog.text

    retry = twilio_post(client, path, status_params("delivered"))
    assert retry.status_code == 200
    assert WebhookEvent.objects.count() == 1
    # The collector saw the failed attempt (it ran before `broken`) and the retry.
    assert [e.event_type for e in published.tracking] == [EventType.DELIVERED] * 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL's row locks"
)
def test_concurrent_duplicate_callbacks_publish_once(published: Published) -> None:
    """Two deliveries of one callback in flight at once: the unique insert lets one through."""

    def slow(sender: Any, **_: Any) -> None:
        time.sleep(0.5)  # hold the first transaction open while the second arrives

    tracking_received.connect(slow, weak=False)
    path = f"{STATUS_PATH}?mid={uuid.uuid4()}"
    statuses: list[int] = []

    def deliver() -> None:
        try:
            statuses.append(twilio_post(Client(), path, status_params("delivered")).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        tracking_received.disconnect(slow)

    assert statuses == [200, 200]
    assert len(published.tracking) == 1
    assert WebhookEvent.objects.count() == 1


# --- Twilio inbound -------------------------------------------------------------------


def test_twilio_inbound_sms(client: Client, published: Published) -> None:
    params = inbound_params("Loved it, thanks")
    response = twilio_post(client, TWILIO_INBOUND_PATH, params)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == EMPTY_TWIML
    [event] = published.inbound
    assert event.provider == "twilio"
    assert event.channel == "sms"
    assert event.event_id == params["MessageSid"]
    assert event.sender == "+14155552671"
    assert event.recipient == "+15005550006"
    assert event.body == event.full_body == "Loved it, thanks"
    assert event.keyword == ""
    assert event.attachments == ()
    row = WebhookEvent.objects.get()
    assert (row.provider, row.kind, row.event_id) == ("twilio", "inbound", params["MessageSid"])


def test_twilio_inbound_whatsapp(client: Client, published: Published) -> None:
    params = inbound_params(
        "Hola",
        From="whatsapp:+14155552671",
        To="whatsapp:+14155238886",
        ProfileName="Ana",
        WaId="14155552671",
    )
    response = twilio_post(client, TWILIO_INBOUND_PATH, params)

    assert response.status_code == 200
    [event] = published.inbound
    assert event.channel == "whatsapp"
    assert event.sender == "+14155552671"
    assert event.recipient == "+14155238886"
    assert event.profile_name == "Ana"


@pytest.mark.parametrize(
    ("raw_from", "expected"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("whatsapp:+44 20 7946 0958", "+442079460958"),
        ("WhatsApp:+4915123456789", "+4915123456789"),
    ],
)
def test_twilio_inbound_phone_normalisation(
    client: Client, published: Published, raw_from: str, expected: str
) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params(From=raw_from))

    assert response.status_code == 200
    assert published.inbound[0].sender == expected
    assert published.inbound[0].channel == (
        "whatsapp" if raw_from.lower().startswith("whatsapp:") else "sms"
    )


@pytest.mark.parametrize("raw_from", ["", "not a number", "whatsapp:", "+1 555", "12345"])
def test_twilio_inbound_unparseable_sender_is_400(
    client: Client, published: Published, raw_from: str
) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params(From=raw_from))

    assert response.status_code == 400
    assert "phone number" in detail(response)
    assert_nothing_kept(published)


def test_twilio_inbound_short_code_recipient_kept(client: Client, published: Published) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params(To="72345"))

    assert response.status_code == 200
    assert published.inbound[0].recipient == "72345"


def test_twilio_inbound_media(client: Client, published: Published) -> None:
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media"
    params = inbound_params(
        "",
        NumMedia="2",
        MediaUrl0=f"{base}/ME111",
        MediaContentType0="image/jpeg",
        MediaUrl1=f"{base}/ME222",
        MediaContentType1="application/pdf",
    )
    response = twilio_post(client, TWILIO_INBOUND_PATH, params)

    assert response.status_code == 200
    [event] = published.inbound
    assert [(a.filename, a.content_type, a.size, a.url) for a in event.attachments] == [
        ("ME111", "image/jpeg", 0, f"{base}/ME111"),
        ("ME222", "application/pdf", 0, f"{base}/ME222"),
    ]


KEYWORD_BODIES = [
    *[(w, "stop") for w in ("STOP", "stop", " Stop. ", "STOP!", "stopall", "Unsubscribe")],
    *[(w, "stop") for w in ("cancel", "END", "quit", "Revoke", "OPTOUT")],
    *[(w, "start") for w in ("START", "yes", "Unstop!")],
    ("STOP please", ""),
    ("don't stop", ""),
]


@pytest.mark.parametrize(("body", "keyword"), KEYWORD_BODIES)
def test_twilio_inbound_keywords_answer_empty_twiml(
    client: Client, published: Published, body: str, keyword: str
) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params(body))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == EMPTY_TWIML
    assert published.inbound[0].keyword == keyword
    assert published.inbound[0].full_body == body


@pytest.mark.parametrize("body", ["HELP", "help", " Help? ", "INFO", "info."])
def test_twilio_inbound_help_answers_help_text(
    client: Client, published: Published, body: str
) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params(body))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Acme &amp; Co &lt;support&gt;: reply STOP to opt out.</Message></Response>"
    )
    assert published.inbound[0].keyword == "help"


def test_twilio_inbound_nul_characters_are_dropped(client: Client, published: Published) -> None:
    response = twilio_post(client, TWILIO_INBOUND_PATH, inbound_params("STOP\x00"))

    assert response.status_code == 200
    assert published.inbound[0].body == "STOP"
    assert published.inbound[0].keyword == "stop"


def test_twilio_inbound_duplicate_answers_same_twiml_publishes_once(
    client: Client, published: Published
) -> None:
    params = inbound_params("HELP")
    first = twilio_post(client, TWILIO_INBOUND_PATH, params)
    second = twilio_post(client, TWILIO_INBOUND_PATH, params)

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert b"<Message>" in second.content
    assert len(published.inbound) == 1
    assert WebhookEvent.objects.count() == 1


# --- SendGrid event webhook -----------------------------------------------------------


@dataclass
class Signer:
    private_key: ec.EllipticCurvePrivateKey

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": ts,
        }


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def signer(settings) -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = _public_key_b64(key)
    return Signer(key)


def post_events(client: Client, body: bytes, headers: dict[str, str]):
    # CONTENT_TYPE in extra: the test client drops it for an empty body.
    return client.post(
        EVENTS_PATH,
        data=body,
        content_type="application/json",
        CONTENT_TYPE="application/json",
        **headers,
    )


def sg_event(event: str, **fields: Any) -> dict[str, Any]:
    item = {
        "email": "Ana@Example.com",
        "timestamp": 1_700_000_000,
        "event": event,
        "sg_event_id": f"evt-{uuid.uuid4().hex}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["journey"],
    }
    item.update(fields)
    return item


def test_sendgrid_events_accepted_and_mapped(
    client: Client, published: Published, signer: Signer
) -> None:
    mid = str(uuid.uuid4())
    events = [
        sg_event("processed", touchline_message_id=mid),
        sg_event("dropped", reason="Bounced Address"),
        sg_event("deferred", response="400 try again later", attempt="1"),
        sg_event("delivered", response="250 OK"),
        sg_event("bounce", type="bounce", status="5.1.1", reason="550 no such user"),
        sg_event("bounce", type="blocked", status="5.7.1", reason="550 blocked by policy"),
        sg_event("open", useragent="Mozilla", ip="1.2.3.4"),
        sg_event("click", url="https://shop.example/review?id=1"),
        sg_event("spamreport"),
        sg_event("unsubscribe"),
        sg_event("group_unsubscribe", asm_group_id=1),
        sg_event("group_resubscribe", asm_group_id=1),
        sg_event("something_new"),
    ]
    # SendGrid's payloads end with CRLF: the signature covers the raw body, not re-encoded JSON.
    body = (json.dumps(events) + "\r\n").encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 200
    assert response.json()["ok"] is True
    types = [e.event_type for e in published.tracking]
    assert types == [
        EventType.QUEUED,
        EventType.REJECTED,
        EventType.DEFERRED,
        EventType.DELIVERED,
        EventType.BOUNCED,
        EventType.BOUNCED,
        EventType.OPENED,
        EventType.CLICKED,
        EventType.COMPLAINED,
        EventType.UNSUBSCRIBED,
        EventType.UNSUBSCRIBED,
        EventType.SUBSCRIBED,
    ]
    processed, dropped, deferred, _, bounce, blocked, _, click, *_ = published.tracking
    assert processed.message_id == mid
    assert processed.provider_message_id == "14c5d75ce93"
    assert processed.provider == "sendgrid"
    assert processed.channel == "email"
    assert processed.recipient == "Ana@Example.com"
    assert processed.event_id == events[0]["sg_event_id"]
    assert processed.timestamp.timestamp() == 1_700_000_000
    assert processed.provider_status == "processed"
    assert dropped.reason == "Bounced Address"
    assert deferred.reason == "400 try again later"
    assert (bounce.reason, bounce.error_code) == ("550 no such user", "5.1.1")
    assert (blocked.reason, blocked.raw["type"]) == ("550 blocked by policy", "blocked")
    assert click.url == "https://shop.example/review?id=1"
    assert all(e.message_id == "" for e in published.tracking[1:])
    # Every accepted event is recorded, including the unmapped one.
    assert WebhookEvent.objects.filter(provider="sendgrid", kind="event").count() == len(events)


def test_sendgrid_custom_arg_must_be_a_uuid(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered", touchline_message_id="'; drop table")]).encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 200
    assert published.tracking[0].message_id == ""


def test_sendgrid_duplicate_sg_event_id_published_once(
    client: Client, published: Published, signer: Signer
) -> None:
    first_event = sg_event("delivered")
    body = json.dumps([first_event, first_event]).encode()  # also repeated inside one batch
    assert post_events(client, body, signer.headers(body)).status_code == 200
    retry = json.dumps([first_event, sg_event("open")]).encode()
    assert post_events(client, retry, signer.headers(retry)).status_code == 200

    assert [e.event_type for e in published.tracking] == [EventType.DELIVERED, EventType.OPENED]
    assert WebhookEvent.objects.count() == 2


def test_sendgrid_event_without_sg_event_id_gets_a_content_hash(
    client: Client, published: Published, signer: Signer
) -> None:
    item = sg_event("open")
    del item["sg_event_id"]
    body = json.dumps([item]).encode()
    assert post_events(client, body, signer.headers(body)).status_code == 200
    reordered = json.dumps([dict(reversed(item.items()))]).encode()
    assert post_events(client, reordered, signer.headers(reordered)).status_code == 200

    [event] = published.tracking
    assert event.event_id.startswith("sha256:")
    assert WebhookEvent.objects.get().event_id == event.event_id


def test_sendgrid_forged_signature_rejected(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    impostor = Signer(ec.generate_private_key(ec.SECP256R1()))
    response = post_events(client, body, impostor.headers(body))

    assert response.status_code == 403
    assert "Invalid" in detail(response)
    assert_nothing_kept(published)


def test_sendgrid_tampered_body_rejected(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    headers = signer.headers(body)
    tampered = body.replace(b"delivered", b"spamreport")
    response = post_events(client, tampered, headers)

    assert response.status_code == 403
    assert_nothing_kept(published)


@pytest.mark.parametrize(
    "missing",
    [
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE",
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP",
        "both",
    ],
)
def test_sendgrid_missing_headers_rejected(
    client: Client, published: Published, signer: Signer, missing: str
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    headers = signer.headers(body)
    if missing == "both":
        headers = {}
    else:
        del headers[missing]
    response = post_events(client, body, headers)

    assert response.status_code == 403
    assert "Missing" in detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize("bad", ["%%%not-base64%%%", "abc", "é", "AAAA"])
def test_sendgrid_bad_signature_encoding_rejected(
    client: Client, published: Published, signer: Signer, bad: str
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    headers = {**signer.headers(body), "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": bad}
    response = post_events(client, body, headers)

    assert response.status_code == 403
    assert_nothing_kept(published)


@pytest.mark.parametrize("offset", [-301, -3600, +301, +86400])
def test_sendgrid_stale_or_future_timestamp_rejected(
    client: Client, published: Published, signer: Signer, offset: int
) -> None:
    """A replay of a correctly signed, captured request must fail once the window closes."""
    body = json.dumps([sg_event("delivered")]).encode()
    response = post_events(client, body, signer.headers(body, int(time.time()) + offset))

    assert response.status_code == 403
    assert "timestamp" in detail(response)
    assert_nothing_kept(published)


def test_sendgrid_non_numeric_timestamp_rejected(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    headers = {**signer.headers(body), "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": "yesterday"}
    response = post_events(client, body, headers)

    assert response.status_code == 403
    assert_nothing_kept(published)


def test_sendgrid_recent_timestamp_within_window_accepted(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    response = post_events(client, body, signer.headers(body, int(time.time()) - 240))

    assert response.status_code == 200
    assert len(published.tracking) == 1


def test_sendgrid_public_key_unset_refuses(
    client: Client, published: Published, signer: Signer, settings
) -> None:
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = ""
    body = json.dumps([sg_event("delivered")]).encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 503
    assert detail(response) == (
        "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured; refusing unsigned events."
    )
    assert_nothing_kept(published)


@pytest.mark.parametrize("key", ["not a key", base64.b64encode(b"garbage").decode()])
def test_sendgrid_malformed_public_key_refuses(
    client: Client, published: Published, signer: Signer, settings, key: str
) -> None:
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = key
    body = json.dumps([sg_event("delivered")]).encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 403
    assert_nothing_kept(published)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"event": "delivered", "sg_event_id": "x"', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"event": "delivered", "sg_event_id": "x"}', "JSON array"),
        (b'"delivered"', "JSON array"),
        (b'[{"event": "delivered"}, 42]', "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
    ids=["truncated", "empty", "object", "string", "not-objects", "deep-nesting"],
)
def test_sendgrid_signed_but_malformed_body_is_400(
    client: Client, published: Published, signer: Signer, body: bytes, message: str
) -> None:
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 400
    assert message in detail(response)
    assert_nothing_kept(published)


def test_sendgrid_non_utf8_body_is_400(
    client: Client, published: Published, signer: Signer
) -> None:
    body = b'[{"event": "delivered", "email": "caf\xe9@example.com"}]'
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 400
    assert "UTF-8" in detail(response)
    assert_nothing_kept(published)


def test_sendgrid_oversized_body_is_413(
    client: Client, published: Published, signer: Signer, settings
) -> None:
    padding = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps([sg_event("delivered", padding=padding)]).encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 413
    assert_nothing_kept(published)


def test_sendgrid_wrong_content_type_is_415(
    client: Client, published: Published, signer: Signer
) -> None:
    body = json.dumps([sg_event("delivered")]).encode()
    response = client.post(
        EVENTS_PATH, data=body, content_type="text/plain", **signer.headers(body)
    )

    assert response.status_code == 415
    assert_nothing_kept(published)


def test_sendgrid_nul_characters_do_not_break_storage(
    client: Client, published: Published, signer: Signer
) -> None:
    """PostgreSQL JSONB/text cannot hold U+0000 or lone surrogates: they must not cause a 500."""
    body = json.dumps([sg_event("dropped", reason="bad\u0000 \ud800 reason")]).encode()
    response = post_events(client, body, signer.headers(body))

    assert response.status_code == 200
    assert "\x00" not in published.tracking[0].reason
    assert WebhookEvent.objects.count() == 1


# --- SendGrid Inbound Parse -----------------------------------------------------------


BOUNDARY = "xYzZY-touchline-test"


def multipart(
    fields: list[tuple[str, bytes | str]],
    files: list[tuple[str, str, str, bytes]] = (),  # type: ignore[assignment]
) -> tuple[bytes, str]:
    """A multipart/form-data body with raw field bytes (so any charset can be sent)."""
    chunks: list[bytes] = []
    for name, value in fields:
        raw = value.encode() if isinstance(value, str) else value
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + raw
            + b"\r\n"
        )
    for name, filename, content_type, data in files:
        chunks.append(
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={BOUNDARY}"


def basic(password: str = INBOUND_SECRET, user: str = "touchline") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post_parse(
    client: Client, body: bytes, content_type: str, auth: str | None = None, **extra: Any
):
    headers = {"HTTP_AUTHORIZATION": basic() if auth is None else auth, **extra}
    if not headers["HTTP_AUTHORIZATION"]:
        del headers["HTTP_AUTHORIZATION"]
    return client.post(
        PARSE_PATH, data=body, content_type=content_type, CONTENT_TYPE=content_type, **headers
    )


ORIGINAL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def parse_fields(**overrides: bytes | str) -> list[tuple[str, bytes | str]]:
    reply_to = reply_address(ORIGINAL_ID)
    headers = (
        "Received: by mx.sendgrid.net with SMTP id abc\n"
        "Message-ID: <CAF=reply-1@mail.customer.example>\n"
        f"In-Reply-To: <{ORIGINAL_ID}@reply.touchline.example>\n"
        "References: <older@mail.example>\n"
        f" <{ORIGINAL_ID}@reply.touchline.example>\n"
        'From: "Ana Pérez" <Ana@Customer.Example>\n'
        f"To: {reply_to}\n"
        "Subject: Re: How was your order?\n"
        "Date: Mon, 3 Feb 2025 10:00:00 +0000\n"
    )
    text = (
        "Yes, loved it!\n\n"
        "On Mon, 3 Feb 2025 at 09:00, Touchline <hello@touchline.example> wrote:\n"
        "> How was your order?\n"
        "> Reply to this email.\n"
    )
    fields: dict[str, bytes | str] = {
        "headers": headers,
        "dkim": "{@customer.example : pass}",
        "to": reply_to,
        "from": '"Ana Pérez" <Ana@Customer.Example>',
        "subject": "Re: How was your order?",
        "text": text,
        "html": "<div>Yes, loved it!</div><blockquote>How was your order?</blockquote>",
        "sender_ip": "203.0.113.9",
        "envelope": json.dumps({"to": [reply_to], "from": "Ana@Customer.Example"}),
        "attachments": "0",
        "charsets": json.dumps(
            {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "utf-8", "html": "utf-8"}
        ),
        "SPF": "pass",
        "spam_score": "0.1",
    }
    fields.update(overrides)
    return list(fields.items())


def test_inbound_parse_accepted(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    [event] = published.inbound
    assert event.provider == "sendgrid"
    assert event.channel == "email"
    assert event.sender == "ana@customer.example"
    assert event.recipient == reply_address(ORIGINAL_ID)
    assert event.reply_token_message_id == ORIGINAL_ID
    assert event.in_reply_to == (f"{ORIGINAL_ID}@reply.touchline.example", "older@mail.example")
    assert event.event_id == "CAF=reply-1@mail.customer.example"
    assert event.subject == "Re: How was your order?"
    assert event.body == "Yes, loved it!"
    assert event.full_body.startswith("Yes, loved it!\n\nOn Mon, 3 Feb 2025")
    assert "> How was your order?" in event.full_body
    assert event.html.startswith("<div>Yes, loved it!</div>")
    assert event.keyword == ""  # "Yes" alone would be "start"; a sentence is not a keyword
    assert event.raw["spam_score"] == "0.1"
    row = WebhookEvent.objects.get()
    assert (row.provider, row.kind, row.event_id) == ("sendgrid", "inbound", event.event_id)


def test_inbound_parse_keyword_only_for_a_single_word(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields(text="STOP\n\n> quoted history\n"))
    assert post_parse(client, body, content_type).status_code == 200
    assert published.inbound[0].keyword == "stop"


def test_inbound_parse_charset_and_attachment(client: Client, published: Published) -> None:
    text = "Merci, le café était parfait.\n\n> Comment était votre commande ?\n"
    subject = "Re: Votre café"
    body, content_type = multipart(
        parse_fields(
            text=text.encode("iso-8859-1"),
            subject=subject.encode("iso-8859-1"),
            html="<p>Merci, le café était parfait.</p>".encode("windows-1252"),
            charsets=json.dumps(
                {"text": "iso-8859-1", "subject": "iso-8859-1", "html": "windows-1252"}
            ),
            attachments="1",
            **{
                "attachment-info": json.dumps(
                    {"attachment1": {"filename": "reçu.pdf", "type": "application/pdf"}}
                )
            },
        ),
        files=[("attachment1", "recu.pdf", "application/pdf", b"%PDF-1.4\x00\xff" * 100)],
    )
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    [event] = published.inbound
    assert event.body == "Merci, le café était parfait."
    assert event.full_body == text
    assert event.subject == subject
    assert event.html == "<p>Merci, le café était parfait.</p>"
    [attachment] = event.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "reçu.pdf",
        "application/pdf",
        1000,
    )
    assert attachment.sha256 == hashlib.sha256(b"%PDF-1.4\x00\xff" * 100).hexdigest()
    assert event.raw["attachment_files"] == [
        {
            "filename": "reçu.pdf",
            "content_type": "application/pdf",
            "size": 1000,
            "sha256": attachment.sha256,
        }
    ]


@pytest.mark.parametrize("charsets", ['{"text": "no-such-charset"}', "{not json", '["x"]'])
def test_inbound_parse_bad_charsets_fall_back_to_utf8(
    client: Client, published: Published, charsets: str
) -> None:
    body, content_type = multipart(
        parse_fields(text="Grüße \xff".encode() + b"\xff tail", charsets=charsets)
    )
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    assert published.inbound[0].body == "Grüße ÿ\ufffd tail"


def test_inbound_parse_reply_token_from_to_header(client: Client, published: Published) -> None:
    body, content_type = multipart(
        parse_fields(
            envelope=json.dumps({"to": ["hello@touchline.example"], "from": "ana@customer.example"})
        )
    )
    assert post_parse(client, body, content_type).status_code == 200
    assert published.inbound[0].reply_token_message_id == ORIGINAL_ID


def test_inbound_parse_forged_reply_token_ignored(client: Client, published: Published) -> None:
    local, domain = reply_address(ORIGINAL_ID).split("@")
    forged_address = f"{local[:-4]}{'beef' if local[-4:] != 'beef' else 'cafe'}@{domain}"
    body, content_type = multipart(
        parse_fields(
            to=forged_address,
            envelope=json.dumps({"to": [forged_address], "from": "ana@customer.example"}),
        )
    )
    assert post_parse(client, body, content_type).status_code == 200
    assert published.inbound[0].reply_token_message_id == ""


def test_inbound_parse_sender_falls_back_to_from_header(
    client: Client, published: Published
) -> None:
    body, content_type = multipart(parse_fields(envelope=json.dumps({"to": [], "from": ""})))
    assert post_parse(client, body, content_type).status_code == 200
    assert published.inbound[0].sender == "ana@customer.example"


def test_inbound_parse_without_any_sender_is_400(client: Client, published: Published) -> None:
    fields = [(k, v) for k, v in parse_fields(envelope="{}") if k not in ("from", "headers")]
    body, content_type = multipart(fields)
    response = post_parse(client, body, content_type)

    assert response.status_code == 400
    assert_nothing_kept(published)


def test_inbound_parse_html_only(client: Client, published: Published) -> None:
    fields = [(k, v) for k, v in parse_fields() if k != "text"]
    fields.append(("html", ""))  # the first "html" field wins; this one is ignored
    body, content_type = multipart(fields)
    assert post_parse(client, body, content_type).status_code == 200
    [event] = published.inbound
    assert event.full_body.startswith("Yes, loved it!")
    assert event.body.startswith("Yes, loved it!")


def test_inbound_parse_raw_mime_mode(client: Client, published: Published) -> None:
    mime = (
        "Message-ID: <raw-1@customer.example>\r\n"
        "From: Ana <ana@customer.example>\r\n"
        f"To: {reply_address(ORIGINAL_ID)}\r\n"
        "Subject: Re: hi\r\n"
        f"In-Reply-To: <{ORIGINAL_ID}@reply.touchline.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCoucou café\r\n\r\n> old\r\n"
        "--b1\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=a.png\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n"
    )
    envelope = {"to": [reply_address(ORIGINAL_ID)], "from": "ana@customer.example"}
    fields = [("envelope", json.dumps(envelope)), ("email", mime), ("subject", "Re: hi")]
    body, content_type = multipart(fields)
    assert post_parse(client, body, content_type).status_code == 200
    [event] = published.inbound
    assert event.event_id == "raw-1@customer.example"
    assert event.body == "Coucou café"
    assert event.in_reply_to == (f"{ORIGINAL_ID}@reply.touchline.example",)
    assert [(a.filename, a.content_type, a.size) for a in event.attachments] == [
        ("a.png", "image/png", 8)
    ]


def test_inbound_parse_without_message_id_gets_a_stable_id(
    client: Client, published: Published
) -> None:
    body, content_type = multipart(parse_fields(headers="Subject: Re: x\n"))
    assert post_parse(client, body, content_type).status_code == 200
    assert post_parse(client, body, content_type).status_code == 200
    [event] = published.inbound
    assert event.event_id.startswith("sha256:")
    assert event.in_reply_to == ()


def test_inbound_parse_duplicate_published_once(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields())
    assert post_parse(client, body, content_type).status_code == 200
    again = post_parse(client, body, content_type)

    assert again.status_code == 200
    assert again.json() == {"ok": True}
    assert len(published.inbound) == 1
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize(
    "auth",
    [
        basic("wrong-secret"),
        basic(INBOUND_SECRET + "x"),
        basic(""),
        "Basic " + base64.b64encode(INBOUND_SECRET.encode()).decode(),  # no colon
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode("touchline:sécret".encode()).decode(),
    ],
)
def test_inbound_parse_wrong_credentials_403(client: Client, published: Published, auth) -> None:
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body, content_type, auth=auth)

    assert response.status_code == 403
    assert detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize("auth", ["", "Bearer " + INBOUND_SECRET, "Basic ", "Basic"])
def test_inbound_parse_missing_credentials_401(client: Client, published: Published, auth) -> None:
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body, content_type, auth=auth)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="touchline-inbound"'
    assert_nothing_kept(published)


def test_inbound_parse_username_is_ignored(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body, content_type, auth=basic(user="anything"))
    assert response.status_code == 200


def test_inbound_parse_secret_unset_refuses(client: Client, published: Published, settings) -> None:
    settings.INBOUND_PARSE_SECRET = ""
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body, content_type, auth=basic(""))

    assert response.status_code == 503
    assert "INBOUND_PARSE_SECRET" in detail(response)
    assert_nothing_kept(published)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"text": "hi"}', "application/json", 415),
        (b"text=hi&from=a%40b.c", "application/x-www-form-urlencoded", 415),
        (b"", f"multipart/form-data; boundary={BOUNDARY}", 400),
        (b"no boundaries here", f"multipart/form-data; boundary={BOUNDARY}", 400),
        (b"--x\r\n", "multipart/form-data", 400),  # no boundary parameter
    ],
    ids=["json", "urlencoded", "empty", "garbage", "no-boundary"],
)
def test_inbound_parse_malformed_requests(
    client: Client, published: Published, body: bytes, content_type: str, status: int
) -> None:
    response = post_parse(client, body, content_type)

    assert response.status_code == status
    assert detail(response)
    assert_nothing_kept(published)


def test_inbound_parse_truncated_body_is_400(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields())
    response = post_parse(client, body[: len(body) // 2], content_type)

    assert response.status_code == 400
    assert "truncated" in detail(response)
    assert_nothing_kept(published)


def test_inbound_parse_over_limit_is_413(client: Client, published: Published, settings) -> None:
    settings.INBOUND_PARSE_MAX_BYTES = 5 * 1024 * 1024
    body, content_type = multipart(parse_fields(text="a" * (10 * 1024 * 1024)))
    response = post_parse(client, body, content_type)

    assert response.status_code == 413
    assert "INBOUND_PARSE_MAX_BYTES" in detail(response)
    assert_nothing_kept(published)


def test_inbound_parse_is_not_bound_by_the_api_upload_limit(
    client: Client, published: Published, settings
) -> None:
    """A reply bigger than the API's body limit (a long quoted thread) still passes; what is
    kept of it is cut to INBOUND_EMAIL_MAX_BYTES and flagged."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    long_text = "Thanks!\n\n" + "> quoted history line\n" * (2 * 1024 * 1024 // 22)
    body, content_type = multipart(parse_fields(text=long_text))
    assert len(body) > 2 * 1024 * 1024
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    [event] = published.inbound
    assert event.body == "Thanks!"
    limit = settings.INBOUND_EMAIL_MAX_BYTES
    assert event.full_body == long_text[:limit]
    assert event.truncated == {"text": len(long_text)}


def test_inbound_parse_handles_a_10mb_field_within_its_limit(
    client: Client, published: Published, settings
) -> None:
    assert settings.INBOUND_PARSE_MAX_BYTES > 10 * 1024 * 1024
    body, content_type = multipart(parse_fields(html="<p>" + "x" * (10 * 1024 * 1024) + "</p>"))
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    [event] = published.inbound
    assert len(event.html) == settings.INBOUND_EMAIL_MAX_BYTES
    assert event.truncated == {"html": 10 * 1024 * 1024 + 7}


def test_inbound_parse_nul_bytes_do_not_break_storage(client: Client, published: Published) -> None:
    body, content_type = multipart(parse_fields(text=b"Hello\x00 there", subject=b"Re:\x00 x"))
    response = post_parse(client, body, content_type)

    assert response.status_code == 200
    assert published.inbound[0].body == "Hello there"
