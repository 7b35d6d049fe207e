"""Provider callbacks normalised into one shape (as django-anymail does), and the hooks
they are published on. channels_app parses and verifies; messaging subscribes and applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.dispatch import Signal


class EventType:
    QUEUED = "queued"
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    BOUNCED = "bounced"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    READ = "read"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBED = "subscribed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TrackingEvent:
    """A delivery status or engagement event about a message we sent."""

    event_type: str
    provider: str
    channel: str
    timestamp: datetime
    event_id: str  # dedupe key: Twilio MessageSid:MessageStatus, SendGrid sg_event_id
    provider_message_id: str = ""
    message_id: str = ""  # ours, when the provider echoed it back (callback URL, custom_args)
    recipient: str = ""
    reason: str = ""
    error_code: str = ""
    provider_status: str = ""
    url: str = ""  # clicked link
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    """A reference to an attachment, never its content."""

    filename: str
    content_type: str
    size: int
    url: str = ""  # media URL (Twilio); email attachments are described, not stored
    sha256: str = ""  # of the content, when it came in the request (email)


@dataclass(frozen=True)
class InboundEvent:
    """A message a customer sent us."""

    provider: str
    channel: str
    timestamp: datetime
    event_id: str  # Twilio MessageSid, or the email's Message-ID
    sender: str  # E.164 phone (no whatsapp: prefix) or lowercased email address
    recipient: str
    body: str = ""  # for email: the reply with quoted history stripped
    full_body: str = ""  # the body as received
    subject: str = ""
    html: str = ""
    profile_name: str = ""
    reply_token_message_id: str = ""  # email: from the signed reply address
    in_reply_to: tuple[str, ...] = ()  # email: In-Reply-To and References ids
    keyword: str = ""  # "stop", "start", "help" or ""
    attachments: tuple[Attachment, ...] = ()
    # Fields cut to the inbound size limits → their size as received (SMS/WhatsApp body:
    # characters; email text/html: UTF-8 bytes). Empty when nothing was cut.
    truncated: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


# Receivers run inside the webhook's transaction; an exception makes the webhook answer
# 5xx so the provider retries.
tracking_received = Signal()  # kwargs: events: list[TrackingEvent]
inbound_received = Signal()  # kwargs: event: InboundEvent
