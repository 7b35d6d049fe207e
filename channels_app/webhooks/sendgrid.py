"""SendGrid webhooks: the signed Event Webhook and Inbound Parse.

Events `/webhooks/sendgrid/events/` (JSON array, ECDSA-signed): 200 `{"ok": true, ...}`
(repeated sg_event_ids and unknown event names are not published); 503 when
SENDGRID_WEBHOOK_PUBLIC_KEY is empty (never accepts unsigned events); 403 missing/bad
signature or timestamp, a timestamp older than SENDGRID_WEBHOOK_MAX_AGE_SECONDS or more than
5 minutes ahead, or an unusable public key; 415 not application/json; 400 a body that is not
UTF-8 (checked before the signature: the SDK verifies text) or, after verification, not a
JSON array of objects; 413 over DATA_UPLOAD_MAX_MEMORY_SIZE; 500 if a subscriber fails.

Inbound Parse `/webhooks/sendgrid/inbound/` (multipart/form-data, HTTP Basic auth whose
password is INBOUND_PARSE_SECRET; SendGrid sends the credentials from the URL,
`https://touchline:SECRET@host/webhooks/sendgrid/inbound/`): 200 `{"ok": true}` (a repeated
Message-ID is not published again); 503 when INBOUND_PARSE_SECRET is empty; 401 with
`WWW-Authenticate: Basic realm="touchline-inbound"` when credentials are missing (the
standard challenge, so clients that wait for it retry with them); 403 when they are wrong or
malformed; 415 not multipart/form-data; 413 over INBOUND_PARSE_MAX_BYTES (this view reads the
body itself, so the API-wide DATA_UPLOAD_MAX_MEMORY_SIZE does not apply); 400 an empty,
truncated or otherwise unparseable form, or no sender address; 500 if a subscriber fails.
Text and HTML bodies over INBOUND_EMAIL_MAX_BYTES each are kept cut to it and flagged
(`InboundEvent.truncated`); attachments are kept as references (name, type, size, SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from ..channels import Channel
from ..events import EventType, InboundEvent, TrackingEvent
from ..keywords import classify_keyword
from ..models import WebhookEvent
from ..reply_token import message_id_from_address
from . import inbound_parse as ip
from .base import (
    Received,
    WebhookError,
    WebhookView,
    cap_utf8,
    clean_json,
    header_content_type,
)

logger = logging.getLogger("channels_app.webhooks")

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
MAX_CLOCK_SKEW_SECONDS = 300
CUSTOM_ARG_MESSAGE_ID = "touchline_message_id"
BASIC_REALM = 'Basic realm="touchline-inbound"'
_RAW_FIELD_MAX_CHARS = 65536

# SendGrid event name → normalised event type; other names are recorded, not published.
EVENT_TYPES: dict[str, str] = {
    "processed": EventType.QUEUED,
    "dropped": EventType.REJECTED,
    "deferred": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCED,  # type "bounce" or "blocked"; the reason says which
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
    "group_resubscribe": EventType.SUBSCRIBED,
}


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    webhook = EventWebhook(public_key)
    if not isinstance(webhook.public_key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return webhook


def _epoch(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return timezone.now()


def _uuid_or_blank(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError):
        return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


class SendGridEventsView(WebhookView):
    """Delivery and engagement events, verified with SendGrid's ECDSA signature."""

    provider = "sendgrid"
    kind = WebhookEvent.Kind.EVENT
    body_text = ""  # the verified body, kept between verify() and parse()

    def check_configured(self) -> None:
        if not settings.SENDGRID_WEBHOOK_PUBLIC_KEY:
            raise WebhookError(
                503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured; refusing unsigned events."
            )

    def verify(self, request: HttpRequest) -> None:
        if header_content_type(request) != "application/json":
            raise WebhookError(415, "Expected an application/json body.")
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        if not signature or not timestamp:
            raise WebhookError(403, f"Missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header.")
        try:
            signed_at = int(timestamp)
        except ValueError as exc:
            raise WebhookError(403, f"{TIMESTAMP_HEADER} is not a Unix time.") from exc
        age = time.time() - signed_at
        if age > settings.SENDGRID_WEBHOOK_MAX_AGE_SECONDS:
            raise WebhookError(403, f"Signature timestamp is {int(age)} s old; refusing a replay.")
        if -age > MAX_CLOCK_SKEW_SECONDS:
            raise WebhookError(403, "Signature timestamp is in the future.")
        try:
            self.body_text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebhookError(400, "The body is not UTF-8.") from exc
        try:
            webhook = _verifier(settings.SENDGRID_WEBHOOK_PUBLIC_KEY)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            logger.error("SENDGRID_WEBHOOK_PUBLIC_KEY cannot be loaded: %s", exc)
            raise WebhookError(403, "The event signature cannot be verified.") from exc
        try:
            valid = webhook.verify_signature(self.body_text, signature, timestamp)
        except (ValueError, TypeError, binascii.Error):  # bad base64, non-ASCII signature
            valid = False
        if not valid:
            raise WebhookError(403, f"Invalid {SIGNATURE_HEADER}.")

    def parse(self, request: HttpRequest) -> list[Received]:
        try:
            data = json.loads(self.body_text)
        except ValueError as exc:
            raise WebhookError(400, f"The body is not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise WebhookError(400, "Expected a JSON array of events.")
        if not all(isinstance(item, dict) for item in data):
            raise WebhookError(400, "Every event must be a JSON object.")
        return [self._received(clean_json(item)) for item in data]

    def _received(self, item: dict[str, Any]) -> Received:
        event_id = _text(item.get("sg_event_id")).strip()
        if not event_id:
            canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
            event_id = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        name = _text(item.get("event")).strip()
        event_type = EVENT_TYPES.get(name)
        if event_type is None:
            logger.info("SendGrid event %r (%s) is not mapped; recorded only", name, event_id)
            return Received(event_id=event_id, payload=item)
        event = TrackingEvent(
            event_type=event_type,
            provider=self.provider,
            channel=Channel.EMAIL,
            timestamp=_epoch(item.get("timestamp")),
            event_id=event_id,
            # sg_message_id is "<X-Message-Id>.<filter/recipient suffix>".
            provider_message_id=_text(item.get("sg_message_id")).split(".", 1)[0],
            message_id=_uuid_or_blank(item.get(CUSTOM_ARG_MESSAGE_ID)),
            recipient=_text(item.get("email")).strip(),
            reason=_text(item.get("reason") or item.get("response")),
            error_code=_text(item.get("status")),
            provider_status=name,
            url=_text(item.get("url")) if name == "click" else "",
            raw=item,
        )
        return Received(event_id=event_id, payload=item, event=event)


class SendGridInboundView(WebhookView):
    """Inbound Parse: a customer's email reply, behind HTTP Basic auth."""

    provider = "sendgrid"
    kind = WebhookEvent.Kind.INBOUND

    def check_configured(self) -> None:
        if not settings.INBOUND_PARSE_SECRET:
            raise WebhookError(
                503, "INBOUND_PARSE_SECRET is not configured; refusing unauthenticated mail."
            )

    def verify(self, request: HttpRequest) -> None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not credentials.strip():
            raise WebhookError(
                401, "HTTP Basic credentials are required.", {"WWW-Authenticate": BASIC_REALM}
            )
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookError(403, "Malformed Basic credentials.") from exc
        _, colon, password = decoded.partition(b":")
        expected = settings.INBOUND_PARSE_SECRET.encode()
        if not colon or not hmac.compare_digest(password, expected):
            raise WebhookError(403, "Wrong credentials.")

    def parse(self, request: HttpRequest) -> list[Received]:
        form = self._read_form(request)
        fields = ip.decode_fields(form)
        headers_text = fields.get("headers", "")
        text, html = fields.get("text", ""), fields.get("html", "")
        files = ip.attachments(form, ip.json_field(fields.get("attachment-info", "")))
        if "email" in form.fields and not (text or html):
            # "Send raw" mode: the whole MIME message in one field.
            try:
                mime = ip.read_raw_mime(form.fields["email"])
            except ip.MalformedForm as exc:
                raise WebhookError(400, str(exc)) from exc
            headers_text, text, html, files = mime.headers, mime.text, mime.html, mime.attachments
        # Credentials were checked before any of this; what is kept is bounded.
        limit = settings.INBOUND_EMAIL_MAX_BYTES
        truncated: dict[str, int] = {}
        text, original = cap_utf8(text, limit)
        if original is not None:
            truncated["text"] = original
        html, original = cap_utf8(html, limit)
        if original is not None:
            truncated["html"] = original
        headers = ip.parse_headers(headers_text)

        envelope_from, envelope_to = ip.envelope_addresses(fields.get("envelope", ""))
        sender = ip.bare_address(envelope_from) or ip.bare_address(
            fields.get("from") or str(headers.get("From", ""))
        )
        if not sender:
            raise WebhookError(400, "No sender address in envelope.from or From.")
        to_header = fields.get("to") or str(headers.get("To", ""))
        addresses = envelope_to + ip.header_addresses(to_header)
        token_message_id = ""
        for address in addresses:
            found = message_id_from_address(address)
            if found:
                token_message_id = str(found)
                break
        in_reply_to = tuple(
            dict.fromkeys(
                ip.message_ids(str(headers.get("In-Reply-To", "")))
                + ip.message_ids(str(headers.get("References", "")))
            )
        )
        subject = ip.decode_subject(fields.get("subject") or str(headers.get("Subject", "")))
        full_body = text or ip.html_to_text(html)
        body = ip.reply_text(full_body)
        message_ids = ip.message_ids(str(headers.get("Message-ID", "")))
        event_id = (message_ids[0] if message_ids else "") or ip.fallback_event_id(
            sender, subject, str(headers.get("Date", "")), full_body
        )
        raw: dict[str, Any] = {
            name: value[:_RAW_FIELD_MAX_CHARS]
            for name, value in fields.items()
            if name not in ("text", "html", "email")
        }
        raw["attachment_files"] = [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in files
        ]
        if truncated:
            raw["truncated"] = truncated
        event = InboundEvent(
            provider=self.provider,
            channel=Channel.EMAIL,
            timestamp=timezone.now(),
            event_id=event_id,
            sender=sender,
            recipient=ip.bare_address(addresses[0]) if addresses else "",
            body=body,
            full_body=full_body,
            subject=subject,
            html=html,
            reply_token_message_id=token_message_id,
            in_reply_to=in_reply_to,
            keyword=classify_keyword(body),
            attachments=files,
            truncated=truncated,
            raw=raw,
        )
        return [Received(event_id=event_id, payload=raw, event=event)]

    def _read_form(self, request: HttpRequest) -> ip.FormData:
        if header_content_type(request) != "multipart/form-data":
            raise WebhookError(415, "Expected a multipart/form-data body.")
        limit = settings.INBOUND_PARSE_MAX_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise WebhookError(400, "Invalid Content-Length.") from exc
        if declared > limit:
            raise WebhookError(413, f"The email exceeds INBOUND_PARSE_MAX_BYTES ({limit} bytes).")
        # request.read(), not request.body/POST: those enforce the API-wide
        # DATA_UPLOAD_MAX_MEMORY_SIZE, far below what an email with attachments needs.
        body = request.read(limit + 1)
        if len(body) > limit:
            raise WebhookError(413, f"The email exceeds INBOUND_PARSE_MAX_BYTES ({limit} bytes).")
        if not body:
            raise WebhookError(400, "The body is empty.")
        try:
            return ip.parse_form(request.META.get("CONTENT_TYPE", ""), body)
        except ip.MalformedForm as exc:
            raise WebhookError(400, str(exc)) from exc

    def respond(
        self, request: HttpRequest, received: list[Received], fresh: list[Received]
    ) -> HttpResponse:
        return JsonResponse({"ok": True})
