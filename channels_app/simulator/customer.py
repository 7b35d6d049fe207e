"""What a customer does on their phone or in their mailbox: reply on a channel, open or click an
email, unsubscribe, report spam, read a WhatsApp message. Each becomes a webhook to Touchline."""

from __future__ import annotations

import base64
import html
import json
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import requests
from urllib3 import encode_multipart_formdata

from .callbacks import (
    Post,
    describe_failure,
    post_now,
    sendgrid_events_post,
    twilio_form_post,
)
from .sendgrid_api import EVENTS_PATH as SENDGRID_EVENTS_PATH
from .sendgrid_api import event_payload
from .state import Record, customer_key, now_iso
from .twilio_api import API_VERSION, new_sid, num_segments, status_params

if TYPE_CHECKING:
    from .server import Simulator

TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound/"
SENDGRID_INBOUND_PATH = "/webhooks/sendgrid/inbound/"
CHANNELS = ("sms", "whatsapp", "email")
TWILIO_EVENTS = ("sent", "delivered", "undelivered", "failed", "read")
SENDGRID_EVENTS = (
    "processed",
    "dropped",
    "deferred",
    "delivered",
    "bounce",
    "open",
    "click",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
)
# The page and the brief say "spam report"; SendGrid calls it spamreport.
EVENT_ALIASES = {"spam report": "spamreport", "spam_report": "spamreport", "opened": "open"}


def channel_for(address: str) -> str:
    """Guess the channel from an address: whatsapp:+…, an email, or a phone number."""
    if address.startswith("whatsapp:"):
        return "whatsapp"
    return "email" if "@" in address else "sms"


def reply(
    sim: Simulator,
    *,
    channel: str,
    customer: str,
    body: str,
    subject: str | None = None,
    in_reply_to_id: str | None = None,
    profile_name: str | None = None,
) -> requests.Response:
    """Post the customer's reply to Touchline's inbound webhook; raises on network errors."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    customer = customer.strip()
    if not customer:
        raise ValueError("customer is required")
    if channel == "email":
        record, post = _email_reply(sim, customer, body, subject, in_reply_to_id)
    else:
        record, post = _twilio_reply(sim, channel, customer, body, profile_name)
    sim.state.add_message(record)
    return _post_logged(sim, record["key"], "received", post)


def post_event(
    sim: Simulator,
    *,
    message_id: str,
    event: str,
    to: str | None = None,
    error_code: int | None = None,
) -> requests.Response:
    """Post one extra signed status callback / event for a recorded outbound message.

    Raises LookupError for an unknown message and ValueError for an event the provider would
    not send (or that cannot be posted)."""
    record = sim.state.find(message_id, to=to)
    if record is None or record["direction"] != "outbound":
        raise LookupError(f"no outbound message {message_id!r}")
    event = EVENT_ALIASES.get(event.strip().lower(), event.strip().lower())
    if record["provider"] == "twilio":
        if event not in TWILIO_EVENTS:
            raise ValueError(f"Twilio status must be one of {', '.join(TWILIO_EVENTS)}")
        if not record["status_callback"]:
            raise ValueError("that message was sent without a StatusCallback")
        code = error_code if event in ("undelivered", "failed") else None
        sim.state.set_status(record["key"], event, error_code=code)
        params = status_params(sim, record, event, code)
        post = twilio_form_post(sim.config.auth_token, record["status_callback"], params)
    else:
        if event not in SENDGRID_EVENTS:
            raise ValueError(f"SendGrid event must be one of {', '.join(SENDGRID_EVENTS)}")
        if not sim.config.sendgrid_signing_key_pem:
            raise ValueError("no SendGrid signing key configured: events cannot be signed")
        current = sim.state.set_status(record["key"], event, error_code=error_code) or record
        post = sendgrid_events_post(
            sim.config.sendgrid_signing_key_pem,
            sim.config.public_base_url + SENDGRID_EVENTS_PATH,
            [event_payload(current, event)],
        )
    return _post_logged(sim, record["key"], event, post)


def _post_logged(sim: Simulator, key: str, name: str, post: Post) -> requests.Response:
    try:
        response = post_now(post)
    except requests.RequestException as exc:
        entry = {"name": name, "attempt": 1, "http_status": None, "error": describe_failure(exc)}
        sim.state.add_event(key, entry, settled=name)
        raise
    entry = {
        "name": name,
        "attempt": 1,
        "http_status": response.status_code,
        "error": None,
        "response": response.text[:200],
    }
    sim.state.add_event(key, entry, settled=name)
    return response


def _twilio_reply(
    sim: Simulator, channel: str, customer: str, body: str, profile_name: str | None
) -> tuple[Record, Post]:
    config = sim.config
    number = customer.removeprefix("whatsapp:")
    sender = f"whatsapp:{number}" if channel == "whatsapp" else number
    # Reply to the number that texted the customer, as a phone would.
    last = sim.state.latest(customer=sender, channel=channel, direction="outbound")
    if last and last["from"]:
        recipient = last["from"]
    elif channel == "whatsapp":
        recipient = f"whatsapp:{config.whatsapp_number}"
    else:
        recipient = config.sms_number
    sid = new_sid()
    params = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": config.account_sid,
        "From": sender,
        "To": recipient,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": str(num_segments(body)),
        "SmsStatus": "received",
        "ApiVersion": API_VERSION,
    }
    if channel == "whatsapp":
        params["ProfileName"] = profile_name or "Customer"
        params["WaId"] = "".join(ch for ch in number if ch.isdigit())
        params["MessageType"] = "text"
    post = twilio_form_post(config.auth_token, config.public_base_url + TWILIO_INBOUND_PATH, params)
    record = _inbound_record(
        key=sid, provider="twilio", channel=channel, sender=sender, recipient=recipient, body=body
    )
    return record, post


def _email_reply(
    sim: Simulator, customer: str, body: str, subject: str | None, in_reply_to_id: str | None
) -> tuple[Record, Post]:
    config = sim.config
    original = None
    if in_reply_to_id:
        original = sim.state.find(in_reply_to_id)
        if original is None or original["channel"] != "email":
            raise LookupError(f"no email {in_reply_to_id!r} to reply to")
    else:
        original = sim.state.latest(customer=customer, channel="email", direction="outbound")
    recipient = (original or {}).get("reply_to") or f"hello@{config.inbound_email_domain}"
    if not subject:
        previous = (original or {}).get("subject") or "Hello"
        subject = previous if previous.lower().startswith("re:") else f"Re: {previous}"
    now = datetime.now(UTC)
    message_id = f"{secrets.token_hex(12)}@mail.customer.example"
    text, html_body = _quoted(body, original)
    header_lines = [
        "Received: by mx.sendgrid.net with SMTP id simulator; " + format_datetime(now),
        f"Message-ID: <{message_id}>",
    ]
    if original:
        # Mail clients thread by the original's Message-ID: the one Touchline set, else the one
        # SendGrid made from its X-Message-Id.
        thread_id = original.get("message_id_header") or f"<{original['id']}>"
        header_lines += [f"In-Reply-To: {thread_id}", f"References: {thread_id}"]
    header_lines += [
        f"From: Customer <{customer}>",
        f"To: {recipient}",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="000000000000simulator"',
    ]
    fields = {
        "headers": "\n".join(header_lines) + "\n",
        "dkim": "{@example.com : pass}",
        "to": recipient,
        "from": f"Customer <{customer}>",
        "subject": subject,
        "text": text,
        "html": html_body,
        "sender_ip": "127.0.0.1",
        "envelope": json.dumps({"to": [recipient], "from": customer}),
        "attachments": "0",
        "charsets": json.dumps(
            {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "utf-8", "html": "utf-8"}
        ),
        "SPF": "pass",
        "spam_score": "0.0",
    }
    payload, content_type = encode_multipart_formdata(list(fields.items()))
    token = base64.b64encode(f"touchline:{config.inbound_parse_secret}".encode()).decode()
    headers = {
        "Content-Type": content_type,
        "Authorization": f"Basic {token}",
        "User-Agent": "Sendlib/1.0 sim-inbound-parse",
    }
    post = Post(
        url=config.public_base_url + SENDGRID_INBOUND_PATH, build=lambda: (payload, headers)
    )
    record = _inbound_record(
        key=message_id,
        provider="sendgrid",
        channel="email",
        sender=customer,
        recipient=recipient,
        body=body,
    )
    record.update(
        {
            "subject": subject,
            "html": html_body,
            "text": text,
            "in_reply_to": original["id"] if original else None,
        }
    )
    return record, post


def _quoted(body: str, original: Record | None) -> tuple[str, str]:
    """The reply as mail clients write it: new text, then the original quoted."""
    reply_html = '<div dir="ltr">' + html.escape(body).replace("\n", "<br>") + "</div>"
    if original is None:
        return body, reply_html
    sent = datetime.fromisoformat(original["received_at"])
    sender = f"{original.get('from_name') or 'Touchline'} <{original['from']}>"
    intro = f"On {sent:%a}, {sent.day} {sent:%b %Y} at {sent:%H:%M}, {sender} wrote:"
    quoted_lines = (original.get("body") or "").splitlines() or [""]
    text = body + "\n\n" + intro + "\n" + "\n".join(f"> {line}".rstrip() for line in quoted_lines)
    original_html = original.get("html") or html.escape(original.get("body") or "")
    html_body = (
        f'{reply_html}<br><div class="gmail_quote"><div class="gmail_attr">'
        f"{html.escape(intro)}<br></div>"
        f'<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid;'
        f'padding-left:1ex">{original_html}</blockquote></div>'
    )
    return text, html_body


def _inbound_record(
    *, key: str, provider: str, channel: str, sender: str, recipient: str, body: str
) -> Record:
    record: dict[str, Any] = {
        "key": key,
        "id": key,
        "provider": provider,
        "channel": channel,
        "direction": "inbound",
        "customer": customer_key(sender),
        "to": recipient,
        "from": sender,
        "body": body,
        "subject": None,
        "html": None,
        "content_sid": None,
        "content_variables": {},
        "media_urls": [],
        "status_callback": None,
        "reply_to": None,
        "custom_args": {},
        "headers": {},
        "categories": [],
        "received_at": now_iso(),
        "touchline_id": None,
        "status": "received",
        "error_code": None,
    }
    return record
