"""Twilio webhooks: message status callbacks and inbound SMS/WhatsApp, both form-encoded.

Every request must carry a valid `X-Twilio-Signature`, computed over the URL Twilio called:
`PUBLIC_BASE_URL` + path + query (never the internal URL a TLS proxy hands us).

Status `/webhooks/twilio/status/`: 200 empty (also for unknown messages and statuses that
carry no event); 403 bad/missing signature; 415 not form-encoded; 400 without
MessageSid/MessageStatus; 413 body over DATA_UPLOAD_MAX_MEMORY_SIZE; 503 no
TWILIO_AUTH_TOKEN; 500 if a subscriber fails (Twilio retries). A repeated
(MessageSid, MessageStatus) is answered 200 and not published again.

Inbound `/webhooks/twilio/inbound/`: 200 `text/xml` TwiML (empty, or HELP_TEXT for a HELP
keyword, also for repeats, which are not published again); 400 without MessageSid or with a
From that is not a phone number; otherwise as above.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from ..channels import Channel, normalize_phone
from ..events import Attachment, EventType, InboundEvent, TrackingEvent
from ..keywords import HELP, classify_keyword
from ..models import WebhookEvent
from .base import (
    Received,
    WebhookError,
    WebhookView,
    cap_chars,
    clean_text,
    header_content_type,
)

logger = logging.getLogger("channels_app.webhooks")

SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# Twilio MessageStatus → normalised event type. Absent statuses produce no event.
STATUS_EVENTS: dict[str, str] = {
    "queued": EventType.QUEUED,
    "accepted": EventType.QUEUED,
    "scheduled": EventType.QUEUED,
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.UNDELIVERED,
    "failed": EventType.FAILED,
    "read": EventType.READ,
    "canceled": EventType.FAILED,
    "partially_delivered": EventType.DELIVERED,
}
# Transitional or inbound-side statuses: recorded, never published.
SILENT_STATUSES = frozenset({"sending", "receiving", "received"})

_MAX_MEDIA = 20  # Twilio sends at most 10; anything beyond is not a real message
# Twilio's own limit for a message body: anything longer is not a real SMS/WhatsApp message,
# and is kept cut to this, flagged, not stored whole.
MAX_INBOUND_BODY_CHARS = 1600


def _params(form: QueryDict) -> dict[str, str]:
    return {key: clean_text(form.get(key, "")) for key in form}


def _strip_whatsapp(address: str) -> str:
    address = address.strip()
    return address[len("whatsapp:") :] if address.lower().startswith("whatsapp:") else address


def _is_whatsapp(*addresses: str) -> bool:
    return any(a.strip().lower().startswith("whatsapp:") for a in addresses)


class TwilioWebhookView(WebhookView):
    """Signature check shared by Twilio's form-encoded webhooks."""

    provider = "twilio"

    def check_configured(self) -> None:
        if not settings.TWILIO_AUTH_TOKEN:
            raise WebhookError(
                503, "TWILIO_AUTH_TOKEN is not configured; refusing unsigned Twilio requests."
            )

    def verify(self, request: HttpRequest) -> None:
        if header_content_type(request) != "application/x-www-form-urlencoded":
            raise WebhookError(415, "Expected an application/x-www-form-urlencoded body.")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise WebhookError(403, f"Missing {SIGNATURE_HEADER} header.")
        url = settings.PUBLIC_BASE_URL + request.get_full_path()
        validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
        # request.POST may raise RequestDataTooBig; the base flow answers 413.
        if not validator.validate(url, request.POST, signature):
            raise WebhookError(403, f"Invalid {SIGNATURE_HEADER} for {url}.")


class TwilioStatusView(TwilioWebhookView):
    """Message status callbacks; our message id rides in the callback URL as `?mid=`."""

    kind = WebhookEvent.Kind.STATUS

    def parse(self, request: HttpRequest) -> list[Received]:
        params = _params(request.POST)
        sid = params.get("MessageSid") or params.get("SmsSid", "")
        status = (params.get("MessageStatus") or params.get("SmsStatus", "")).strip().lower()
        if not sid or not status:
            raise WebhookError(400, "MessageSid and MessageStatus are required.")
        mid = request.GET.get("mid", "")
        message_id = _uuid_or_blank(mid)
        if mid and not message_id:
            logger.info("Twilio status for %s: ignoring malformed mid=%r", sid, mid)
        event_id = f"{sid}:{status}"
        payload: dict[str, Any] = {"params": params, "query": _params(request.GET)}
        event_type = STATUS_EVENTS.get(status)
        if event_type is None:
            if status not in SILENT_STATUSES:
                logger.info("Twilio status %r for %s is not mapped; recorded only", status, sid)
            return [Received(event_id=event_id, payload=payload)]
        frm, to = params.get("From", ""), params.get("To", "")
        event = TrackingEvent(
            event_type=event_type,
            provider=self.provider,
            channel=Channel.WHATSAPP if _is_whatsapp(frm, to) else Channel.SMS,
            timestamp=timezone.now(),  # Twilio's callbacks carry no event time
            event_id=event_id,
            provider_message_id=sid,
            message_id=message_id,
            recipient=_strip_whatsapp(to),
            reason=params.get("ErrorMessage", ""),
            error_code=params.get("ErrorCode", "").strip(),
            provider_status=status,
            raw=params,
        )
        return [Received(event_id=event_id, payload=payload, event=event)]

    def respond(
        self, request: HttpRequest, received: list[Received], fresh: list[Received]
    ) -> HttpResponse:
        return HttpResponse(status=200, content_type="text/plain")


class TwilioInboundView(TwilioWebhookView):
    """Inbound SMS and WhatsApp (told apart by `whatsapp:` on From); answers with TwiML."""

    kind = WebhookEvent.Kind.INBOUND

    def parse(self, request: HttpRequest) -> list[Received]:
        params = _params(request.POST)
        sid = params.get("MessageSid") or params.get("SmsMessageSid", "")
        if not sid:
            raise WebhookError(400, "MessageSid is required.")
        raw_from = params.get("From", "")
        try:
            sender = normalize_phone(raw_from)
        except ValidationError as exc:
            raise WebhookError(400, f"From {raw_from!r} is not a valid phone number.") from exc
        recipient = _strip_whatsapp(params.get("To", ""))
        # Short codes and sender ids are not E.164: keep them as Twilio wrote them.
        with contextlib.suppress(ValidationError):
            recipient = normalize_phone(recipient)
        body, original = cap_chars(params.get("Body", ""), MAX_INBOUND_BODY_CHARS)
        truncated = {"body": original} if original is not None else {}
        if truncated:
            params["Body"] = body  # the stored raw payload too
        event = InboundEvent(
            provider=self.provider,
            channel=Channel.WHATSAPP if _is_whatsapp(raw_from) else Channel.SMS,
            timestamp=timezone.now(),
            event_id=sid,
            sender=sender,
            recipient=recipient,
            body=body,
            full_body=body,
            profile_name=params.get("ProfileName", ""),
            keyword=classify_keyword(body),
            attachments=_media(params),
            truncated=truncated,
            raw=params,
        )
        return [Received(event_id=sid, payload=params, event=event)]

    def respond(
        self, request: HttpRequest, received: list[Received], fresh: list[Received]
    ) -> HttpResponse:
        event = received[0].event
        help_text = settings.HELP_TEXT
        if isinstance(event, InboundEvent) and event.keyword == HELP and help_text:
            twiml = MessagingResponse()
            twiml.message(help_text)
            return HttpResponse(str(twiml), content_type="text/xml")
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _media(params: dict[str, str]) -> tuple[Attachment, ...]:
    try:
        count = int(params.get("NumMedia") or 0)
    except ValueError:
        count = 0
    attachments = []
    for index in range(max(0, min(count, _MAX_MEDIA))):
        url = params.get(f"MediaUrl{index}", "")
        if not url:
            continue
        filename = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
        attachments.append(
            Attachment(
                filename=filename,
                content_type=params.get(f"MediaContentType{index}", ""),
                size=0,  # Twilio hosts the media; we keep the link, not the bytes
                url=url,
            )
        )
    return tuple(attachments)


def _uuid_or_blank(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError):
        return ""
