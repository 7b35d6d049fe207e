"""The provider simulator, driven by the real twilio and sendgrid SDKs. No database needed:
a tiny stdlib HTTP server plays Touchline and checks what the simulator posts back."""

from __future__ import annotations

import base64
import email
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from python_http_client.exceptions import (
    BadRequestsError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Category, CustomArg, Header, Mail, ReplyTo
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels_app.simulator import Simulator, SimulatorConfig, start_simulator

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token"
SENDGRID_KEY = "SG.test-key"
PARSE_SECRET = "parse-secret"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "+14155238886"
CUSTOMER = "+15551234567"


# --- "Touchline": records every POST -------------------------------------------------------
@dataclass
class Received:
    path: str  # with its query string
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def multipart(self) -> dict[str, str]:
        raw = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + self.body
        parsed: Message = email.message_from_bytes(raw)
        return {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            .decode()
            .replace("\r\n", "\n")
            for part in parsed.get_payload()
        }


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 200
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, count: int, path: str = "", timeout: float = 5.0) -> list[Received]:
        """The first `count` requests whose path starts with `path`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [r for r in self.requests if r.path.startswith(path)]
                if len(hits) >= count:
                    return hits
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"got {len(hits)} of {count} requests to {path!r}")
                self.cond.wait(remaining)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            box = holder["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with box.cond:
                box.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = box.statuses.pop(0) if box.statuses else 200
                box.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield holder["receiver"]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def signing_key() -> tuple[str, str]:
    """(private PEM for the simulator, base64 DER public key as SendGrid shows it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    return pem, public


@pytest.fixture
def sim(receiver: Receiver, signing_key: tuple[str, str]) -> Iterator[Simulator]:
    config = SimulatorConfig(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sendgrid_api_key=SENDGRID_KEY,
        sendgrid_signing_key_pem=signing_key[0],
        public_base_url=receiver.url,
        inbound_parse_secret=PARSE_SECRET,
        sms_number=SMS_FROM,
        whatsapp_number=WHATSAPP_FROM,
        inbound_email_domain="reply.touchline.example",
        callback_delay_ms=30,
    )
    simulator = start_simulator(config, port=0)
    yield simulator
    simulator.stop()


def twilio_client(sim: Simulator, token: str = AUTH_TOKEN) -> Client:
    client = Client(ACCOUNT_SID, token, http_client=TwilioHttpClient(timeout=5))
    client.api.base_url = sim.url
    return client


def sendgrid_client(sim: Simulator, key: str = SENDGRID_KEY) -> SendGridAPIClient:
    client = SendGridAPIClient(key, host=sim.url)
    client.client.timeout = 5
    return client


def valid_twilio_signature(received: Received, url: str) -> bool:
    signature = received.headers["X-Twilio-Signature"]
    return RequestValidator(AUTH_TOKEN).validate(url, received.form(), signature)


def a_mail(to: str = "ada@example.com") -> Mail:
    mail = Mail(
        from_email=("hello@touchline.example", "Touchline"),
        to_emails=to,
        subject="Thanks for your order",
        plain_text_content="Thanks, Ada!\nYour order ships tomorrow.",
        html_content="<p>Thanks, Ada! <a href='https://shop.example/o/1'>Order</a></p>",
    )
    mail.reply_to = ReplyTo("reply+tok123@reply.touchline.example")
    mail.add_custom_arg(CustomArg("touchline_message_id", "m-42"))
    mail.add_category(Category("post-purchase"))
    return mail


# --- Twilio ---------------------------------------------------------------------------------
def test_sms_send_records_message_and_posts_signed_callbacks_in_order(
    sim: Simulator, receiver: Receiver
) -> None:
    callback = f"{receiver.url}/webhooks/twilio/status/?mid=abc-123"
    created = twilio_client(sim).messages.create(
        to=CUSTOMER, from_=SMS_FROM, body="Your order shipped", status_callback=callback
    )

    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued"
    assert created.to == CUSTOMER and created.from_ == SMS_FROM
    assert created.date_created is not None and created.num_segments == "1"

    sent, delivered = receiver.wait(2, "/webhooks/twilio/status/")
    for hit, status in ((sent, "sent"), (delivered, "delivered")):
        assert hit.path == "/webhooks/twilio/status/?mid=abc-123"
        assert valid_twilio_signature(hit, callback)
        params = hit.form()
        assert params["MessageStatus"] == params["SmsStatus"] == status
        assert params["MessageSid"] == params["SmsSid"] == created.sid
        assert params["AccountSid"] == ACCOUNT_SID
        assert (params["From"], params["To"]) == (SMS_FROM, CUSTOMER)
        assert "ErrorCode" not in params

    [record] = sim.messages(to=CUSTOMER)
    assert record["id"] == created.sid
    assert record["provider"] == "twilio" and record["channel"] == "sms"
    assert record["body"] == "Your order shipped"
    assert record["status_callback"] == callback
    assert record["touchline_id"] == "abc-123" and record["request_count_for_id"] == 1
    record = sim.wait_for(created.sid, "delivered")
    assert [h["status"] for h in record["status_history"]] == ["queued", "sent", "delivered"]
    assert [(e["name"], e["http_status"]) for e in record["events"]] == [
        ("sent", 200),
        ("delivered", 200),
    ]
    # Touchline can reconcile with a fetch, as on Twilio.
    assert twilio_client(sim).messages(created.sid).fetch().status == "delivered"


def test_whatsapp_template_send_and_read_receipt(sim: Simulator, receiver: Receiver) -> None:
    sim.configure(whatsapp_read=True)
    created = twilio_client(sim).messages.create(
        to=f"whatsapp:{CUSTOMER}",
        from_=f"whatsapp:{WHATSAPP_FROM}",
        content_sid="HX" + "a" * 32,
        content_variables=json.dumps({"1": "Ada", "2": "#1001"}),
        status_callback=f"{receiver.url}/webhooks/twilio/status/?mid=wa-1",
    )

    hits = receiver.wait(3, "/webhooks/twilio/status/")
    assert [h.form()["MessageStatus"] for h in hits] == ["sent", "delivered", "read"]
    assert hits[0].form()["To"] == f"whatsapp:{CUSTOMER}"
    [record] = sim.messages(channel="whatsapp")
    assert record["id"] == created.sid
    assert record["content_sid"] == "HX" + "a" * 32
    assert record["content_variables"] == {"1": "Ada", "2": "#1001"}
    assert record["body"] == ""


def test_enforced_whatsapp_window_fails_free_form_until_the_customer_writes(
    sim: Simulator, receiver: Receiver
) -> None:
    sim.configure(enforce_whatsapp_window=True)
    client = twilio_client(sim)
    callback = f"{receiver.url}/webhooks/twilio/status/"

    first = client.messages.create(
        to=f"whatsapp:{CUSTOMER}",
        from_=f"whatsapp:{WHATSAPP_FROM}",
        body="Hi",
        status_callback=callback,
    )
    assert sim.wait_for(first.sid, "failed")["error_code"] == 63016
    sim.reply(channel="whatsapp", customer=CUSTOMER, body="Hello?")
    second = client.messages.create(
        to=f"whatsapp:{CUSTOMER}",
        from_=f"whatsapp:{WHATSAPP_FROM}",
        body="Hi",
        status_callback=callback,
    )

    sim.wait_for(second.sid, "delivered")
    failed = receiver.wait(1, "/webhooks/twilio/status/")[0].form()
    assert (failed["MessageStatus"], failed["ErrorCode"]) == ("failed", "63016")


def test_wrong_twilio_credentials_raise_401(sim: Simulator) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(sim, token="wrong").messages.create(to=CUSTOMER, from_=SMS_FROM, body="x")

    assert caught.value.status == 401 and caught.value.code == 20003
    assert sim.messages() == []
    assert [r["reason"] for r in sim.rejected()] == ["auth"]


@pytest.mark.parametrize(
    ("to", "body", "code"),
    [
        ("+15005550001", "hi", 21211),  # Twilio's magic invalid number
        ("+15005550004", "hi", 21610),  # opted out
        ("not-a-number", "hi", 21211),
        (CUSTOMER, "", 21602),
        (CUSTOMER, "x" * 1601, 21617),
    ],
)
def test_twilio_rejections_carry_twilio_error_codes(
    sim: Simulator, to: str, body: str, code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(sim).messages.create(to=to, from_=SMS_FROM, body=body)

    assert caught.value.status == 400 and caught.value.code == code
    assert sim.messages() == []
    assert [r["code"] for r in sim.rejected()] == [code]


def test_injected_429_carries_retry_after_then_recovers(sim: Simulator) -> None:
    sim.configure(error_rate=1.0, error_status=429, retry_after=7)
    client = twilio_client(sim)

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=CUSTOMER, from_=SMS_FROM, body="hi")
    assert caught.value.status == 429 and caught.value.code == 20429
    assert client.http_client._test_only_last_response.headers["Retry-After"] == "7"

    with pytest.raises(TooManyRequestsError) as sg_caught:
        sendgrid_client(sim).send(a_mail())
    reset_at = int(sg_caught.value.headers["X-RateLimit-Reset"])
    assert time.time() < reset_at <= time.time() + 8

    sim.configure(error_status=503)
    with pytest.raises(ServiceUnavailableError):
        sendgrid_client(sim).send(a_mail())

    sim.reset()  # back to the configured defaults: no injection
    client.messages.create(to=CUSTOMER, from_=SMS_FROM, body="hi")
    assert len(sim.messages()) == 1 and sim.rejected() == []


def test_undeliverable_number_gets_undelivered_with_error_code(
    sim: Simulator, receiver: Receiver
) -> None:
    sim.configure(undeliverable={CUSTOMER: 30003})
    twilio_client(sim).messages.create(
        to=CUSTOMER,
        from_=SMS_FROM,
        body="hi",
        status_callback=f"{receiver.url}/webhooks/twilio/status/",
    )

    sent, undelivered = receiver.wait(2, "/webhooks/twilio/status/")
    assert sent.form()["MessageStatus"] == "sent"
    assert undelivered.form()["MessageStatus"] == "undelivered"
    assert undelivered.form()["ErrorCode"] == "30003"


def test_callbacks_are_retried_on_5xx(sim: Simulator, receiver: Receiver) -> None:
    receiver.statuses = [503]
    created = twilio_client(sim).messages.create(
        to=CUSTOMER,
        from_=SMS_FROM,
        body="hi",
        status_callback=f"{receiver.url}/webhooks/twilio/status/",
    )

    hits = receiver.wait(3, "/webhooks/twilio/status/")
    assert [h.form()["MessageStatus"] for h in hits] == ["sent", "sent", "delivered"]
    record = sim.wait_for(created.sid, "delivered")
    assert [(e["name"], e["attempt"], e["http_status"]) for e in record["events"]] == [
        ("sent", 1, 503),
        ("sent", 2, 200),
        ("delivered", 1, 200),
    ]


# --- SendGrid -------------------------------------------------------------------------------
def test_sendgrid_send_records_and_posts_signed_events(
    sim: Simulator, receiver: Receiver, signing_key: tuple[str, str]
) -> None:
    response = sendgrid_client(sim).send(a_mail())

    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22

    [record] = sim.messages(to="ada@example.com")
    assert record["id"] == message_id
    assert record["provider"] == "sendgrid" and record["channel"] == "email"
    assert record["subject"] == "Thanks for your order"
    assert record["body"].startswith("Thanks, Ada!")
    assert record["html"].startswith("<p>")
    assert record["reply_to"] == "reply+tok123@reply.touchline.example"
    assert record["custom_args"] == {"touchline_message_id": "m-42"}
    assert record["touchline_id"] == "m-42"

    verifier = EventWebhook(signing_key[1])
    names = []
    for hit in receiver.wait(2, "/webhooks/sendgrid/events/"):
        body = hit.body.decode()
        assert verifier.verify_signature(
            body,
            hit.headers["X-Twilio-Email-Event-Webhook-Signature"],
            hit.headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
        assert hit.headers["Content-Type"] == "application/json"
        [event] = json.loads(body)
        names.append(event["event"])
        assert event["email"] == "ada@example.com"
        assert event["touchline_message_id"] == "m-42"
        assert event["sg_message_id"].startswith(message_id + ".")
        assert event["category"] == ["post-purchase"]
        assert isinstance(event["timestamp"], int) and event["sg_event_id"]
    assert names == ["processed", "delivered"]
    assert not verifier.verify_signature(body.replace("ada", "eve"), *_sg_headers(hit))


def _sg_headers(hit: Received) -> tuple[str, str]:
    return (
        hit.headers["X-Twilio-Email-Event-Webhook-Signature"],
        hit.headers["X-Twilio-Email-Event-Webhook-Timestamp"],
    )


def test_sendgrid_bounce_for_undeliverable_address(sim: Simulator, receiver: Receiver) -> None:
    sim.configure(undeliverable={"gone@example.com": 550})
    sendgrid_client(sim).send(a_mail("gone@example.com"))

    _, second = receiver.wait(2, "/webhooks/sendgrid/events/")
    [event] = json.loads(second.body)
    assert event["event"] == "bounce"
    assert (event["status"], event["type"]) == ("5.1.1", "bounce")
    assert event["reason"].startswith("550 5.1.1")


def test_sendgrid_wrong_key_and_invalid_payloads(sim: Simulator) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        sendgrid_client(sim, key="SG.wrong").send(a_mail())
    assert "authorization grant is invalid" in caught.value.body.decode()

    client = sendgrid_client(sim)
    without_content = {
        "personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "from": {"email": "hello@touchline.example"},
        "subject": "Hi",
    }
    with pytest.raises(BadRequestsError) as caught_bad:
        client.client.mail.send.post(request_body=without_content)
    [error] = json.loads(caught_bad.value.body)["errors"]
    assert error["field"] == "content"

    with pytest.raises(BadRequestsError):
        client.client.mail.send.post(request_body={**without_content, "personalizations": []})
    assert sim.messages() == []
    assert [r["reason"] for r in sim.rejected()] == ["auth", "validation", "validation"]


# --- Customer actions -----------------------------------------------------------------------
def test_sms_and_whatsapp_replies_are_signed_inbound_webhooks(
    sim: Simulator, receiver: Receiver
) -> None:
    inbound_url = f"{receiver.url}/webhooks/twilio/inbound/"

    assert sim.reply(channel="sms", customer=CUSTOMER, body="STOP").status_code == 200
    assert sim.reply(channel="whatsapp", customer=CUSTOMER, body="Yes please").status_code == 200

    sms, whatsapp = receiver.wait(2, "/webhooks/twilio/inbound/")
    assert valid_twilio_signature(sms, inbound_url)
    assert valid_twilio_signature(whatsapp, inbound_url)
    params = sms.form()
    assert (params["From"], params["To"], params["Body"]) == (CUSTOMER, SMS_FROM, "STOP")
    assert params["MessageSid"].startswith("SM") and params["NumMedia"] == "0"
    assert params["AccountSid"] == ACCOUNT_SID
    params = whatsapp.form()
    assert params["From"] == f"whatsapp:{CUSTOMER}"
    assert params["To"] == f"whatsapp:{WHATSAPP_FROM}"
    assert params["WaId"] == CUSTOMER.removeprefix("+") and params["ProfileName"]
    inbound = sim.messages(direction="inbound")
    assert [(m["channel"], m["body"]) for m in inbound] == [
        ("sms", "STOP"),
        ("whatsapp", "Yes please"),
    ]


def test_email_reply_is_an_inbound_parse_post_threaded_to_the_sent_email(
    sim: Simulator, receiver: Receiver
) -> None:
    mail = a_mail()
    mail.add_header(Header("Message-ID", "<m-42@reply.touchline.example>"))
    sendgrid_client(sim).send(mail)

    response = sim.reply(channel="email", customer="ada@example.com", body="Love it, thanks!")

    assert response.status_code == 200
    [hit] = receiver.wait(1, "/webhooks/sendgrid/inbound/")
    expected = "Basic " + base64.b64encode(f"touchline:{PARSE_SECRET}".encode()).decode()
    assert hit.headers["Authorization"] == expected
    assert hit.headers["Content-Type"].startswith("multipart/form-data")
    fields = hit.multipart()
    assert fields["from"] == "Customer <ada@example.com>"
    assert fields["to"] == "reply+tok123@reply.touchline.example"
    assert fields["subject"] == "Re: Thanks for your order"
    assert json.loads(fields["envelope"]) == {
        "to": ["reply+tok123@reply.touchline.example"],
        "from": "ada@example.com",
    }
    assert json.loads(fields["charsets"])["text"] == "utf-8"
    assert fields["text"].startswith("Love it, thanks!\n\nOn ")
    assert "> Your order ships tomorrow." in fields["text"]
    assert "In-Reply-To: <m-42@reply.touchline.example>" in fields["headers"]
    assert (fields["SPF"], fields["spam_score"]) == ("pass", "0.0")


def test_email_events_from_customer_actions(
    sim: Simulator, receiver: Receiver, signing_key: tuple[str, str]
) -> None:
    message_id = sendgrid_client(sim).send(a_mail()).headers["X-Message-Id"]
    receiver.wait(2, "/webhooks/sendgrid/events/")

    control = requests.post(
        f"{sim.url}/_sim/event", json={"message_id": message_id, "event": "click"}, timeout=5
    )

    assert control.json()["touchline_status"] == 200
    hit = receiver.wait(3, "/webhooks/sendgrid/events/")[2]
    assert EventWebhook(signing_key[1]).verify_signature(hit.body.decode(), *_sg_headers(hit))
    [event] = json.loads(hit.body)
    assert (event["event"], event["url"]) == ("click", "https://shop.example/o/1")
    assert event["touchline_message_id"] == "m-42"

    # Without a Message-ID of Touchline's, replies thread by the one SendGrid made.
    sim.reply(channel="email", customer="ada@example.com", body="Hi")
    fields = receiver.wait(1, "/webhooks/sendgrid/inbound/")[0].multipart()
    assert f"In-Reply-To: <{message_id}@" in fields["headers"]
    assert event["smtp-id"].startswith(f"<{message_id}@")


# --- Page and control endpoints -------------------------------------------------------------
def test_page_lists_conversations_and_escapes_bodies(sim: Simulator, receiver: Receiver) -> None:
    twilio_client(sim).messages.create(
        to=CUSTOMER, from_=SMS_FROM, body="<script>alert(1)</script>"
    )
    sendgrid_client(sim).send(a_mail())

    page = requests.get(sim.url + "/", timeout=5)

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<title>Touchline provider simulator</title>" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text
    assert CUSTOMER in page.text and "ada@example.com" in page.text
    assert "srcdoc=" in page.text and 'value="spamreport"' in page.text

    form = requests.post(
        sim.url + "/_sim/reply_form",
        data={"customer": CUSTOMER, "channel": "sms", "body": "Thanks!"},
        allow_redirects=False,
        timeout=5,
    )
    assert form.status_code == 303 and form.headers["Location"] == "/"
    assert receiver.wait(1, "/webhooks/twilio/inbound/")[0].form()["Body"] == "Thanks!"

    settings_form = requests.post(
        sim.url + "/_sim/config_form",
        data={"error_rate": "0.25", "error_status": "503", "fail_numbers": "+15550000000=21211"},
        allow_redirects=False,
        timeout=5,
    )
    assert settings_form.status_code == 303
    settings = requests.get(sim.url + "/_sim/health", timeout=5).json()["settings"]
    assert settings["error_rate"] == 0.25 and settings["error_status"] == 503
    assert settings["fail_numbers"] == {"+15550000000": 21211}
    assert settings["callbacks"] is False  # an unchecked box


def test_json_control_endpoints(sim: Simulator) -> None:
    twilio_client(sim).messages.create(to=CUSTOMER, from_=SMS_FROM, body="one")
    twilio_client(sim).messages.create(to="+15557654321", from_=SMS_FROM, body="two")

    listed = requests.get(sim.url + "/_sim/messages", params={"to": CUSTOMER}, timeout=5).json()
    assert [m["body"] for m in listed] == ["one"]
    bad = requests.post(sim.url + "/_sim/config", json={"error_rate": 2}, timeout=5)
    assert bad.status_code == 400
    ok = requests.post(sim.url + "/_sim/config", json={"latency_ms": 5}, timeout=5)
    assert ok.json()["latency_ms"] == 5
    cross_site = requests.post(
        sim.url + "/_sim/reset", headers={"Origin": "https://evil.example"}, timeout=5
    )
    assert cross_site.status_code == 403
    assert requests.post(sim.url + "/_sim/reset", timeout=5).status_code == 200
    assert requests.get(sim.url + "/_sim/messages", timeout=5).json() == []
    assert requests.get(sim.url + "/_sim/health", timeout=5).json()["status"] == "ok"


# --- Management command config --------------------------------------------------------------
def _settings(**overrides: Any) -> SimpleNamespace:
    values = {
        "TWILIO_SIMULATED": True,
        "SENDGRID_SIMULATED": True,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "SIMULATOR_SENDGRID_SIGNING_KEY": "",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000/",
        "INBOUND_PARSE_SECRET": PARSE_SECRET,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "INBOUND_EMAIL_DOMAIN": "reply.touchline.example",
    }
    return SimpleNamespace(**{**values, **overrides})


def test_command_config_comes_from_settings_and_never_holds_real_secrets() -> None:
    from django.core.management.base import CommandError

    from channels_app.management.commands.provider_simulator import config_from_settings

    config, warnings = config_from_settings(_settings(), error_rate=0.5, callbacks=None)
    assert (config.account_sid, config.auth_token) == (ACCOUNT_SID, AUTH_TOKEN)
    assert config.public_base_url == "http://127.0.0.1:8000"
    assert config.error_rate == 0.5 and config.callbacks is True and warnings == []

    config, warnings = config_from_settings(
        _settings(TWILIO_SIMULATED=False, TWILIO_AUTH_TOKEN="real-token")
    )
    assert config.auth_token != "real-token" and len(warnings) == 1

    with pytest.raises(CommandError, match="real providers"):
        config_from_settings(_settings(TWILIO_SIMULATED=False, SENDGRID_SIMULATED=False))


# --- Looking messages up (reconciling an `unknown` send), as on api.twilio.com -------------


def test_twilio_fetch_unknown_sid_is_a_20404(sim: Simulator) -> None:
    missing = "SM" + "f" * 32
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(sim).messages(missing).fetch()
    assert caught.value.status == 404 and caught.value.code == 20404
    raw = requests.get(
        f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{missing}.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    assert raw.status_code == 404
    assert raw.json() == {
        "code": 20404,
        "message": f"The requested resource /2010-04-01/Accounts/{ACCOUNT_SID}/Messages/"
        f"{missing}.json was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


def test_page_makes_links_in_bodies_clickable_and_keeps_them_escaped(sim: Simulator) -> None:
    twilio_client(sim).messages.create(
        to=CUSTOMER,
        from_=SMS_FROM,
        body='Shop: https://t.example/l/Ab9?x=1&y=2 or "https://t.example/q" <b>now</b>',
    )

    page = requests.get(sim.url + "/", timeout=5).text

    assert (
        '<a class=link href="https://t.example/l/Ab9?x=1&amp;y=2" target=_blank '
        'rel="noopener noreferrer">https://t.example/l/Ab9?x=1&amp;y=2</a>'
    ) in page
    # a quoted link ends before the quote; the markup around it stays text
    assert 'href="https://t.example/q"' in page
    assert "&lt;b&gt;now&lt;/b&gt;" in page and "<b>now</b>" not in page


def test_twilio_list_filters_by_to_from_and_date_sent_and_pages(sim: Simulator) -> None:
    from datetime import UTC, datetime, timedelta

    client = twilio_client(sim)
    other = "+15557654321"
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sids = [
        client.messages.create(to=CUSTOMER, from_=SMS_FROM, body=f"Order {i}").sid for i in range(7)
    ]
    client.messages.create(to=other, from_=SMS_FROM, body="Someone else")
    client.messages.create(to=CUSTOMER, from_=WHATSAPP_FROM, body="Another sender")
    for sid in sids:
        sim.wait_for(sid, "delivered")

    # The SDK follows next_page_uri: 7 messages in pages of 3, newest first.
    listed = list(
        client.messages.stream(to=CUSTOMER, from_=SMS_FROM, date_sent_after=started, page_size=3)
    )
    assert [m.sid for m in listed] == sids[::-1]
    assert {m.body for m in listed} == {f"Order {i}" for i in range(7)}
    assert all(m.direction == "outbound-api" and m.status == "delivered" for m in listed)

    # On the wire: DateSent>=<ISO 8601>; paging by PageSize, Page and PageToken.
    url = f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    first = requests.get(
        url,
        params={"To": CUSTOMER, "DateSent>": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "PageSize": 5},
        auth=auth,
        timeout=5,
    ).json()
    assert set(first) == {
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "messages",
        "start",
        "uri",
    }
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 5, 0, 4)
    assert first["previous_page_uri"] is None
    assert len(first["messages"]) == 5 and first["messages"][0]["body"] == "Another sender"
    assert "PageToken=PA" in first["next_page_uri"] and "Page=1" in first["next_page_uri"]
    second = requests.get(sim.url + first["next_page_uri"], auth=auth, timeout=5).json()
    assert [m["sid"] for m in second["messages"]] == sids[:3][::-1]
    assert second["next_page_uri"] is None and second["start"] == 5

    # A date after every send, or a date-only filter for another day, lists nothing.
    later = started + timedelta(hours=1)
    assert list(client.messages.stream(to=CUSTOMER, date_sent_after=later)) == []
    assert list(client.messages.stream(to=CUSTOMER, date_sent_before=started)) == []
    assert len(list(client.messages.stream(to=CUSTOMER, date_sent=started.date()))) == 8
    # The listing, like Twilio's, never says where status callbacks go.
    assert "status_callback" not in first["messages"][0]


def test_twilio_list_needs_credentials_and_valid_filters(sim: Simulator) -> None:
    url = f"{sim.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert requests.get(url, timeout=5).status_code == 401
    bad = requests.get(
        url, params={"DateSent>": "yesterday"}, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    assert bad.status_code == 400 and bad.json()["code"] == 20001
