"""Standard Webhooks payloads, `{"type", "timestamp", "data"}`, built from what the messaging
and journeys hooks publish. Each builder loads what it needs with one query and returns None
when the object is gone (deleted between the commit and the hook)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils import timezone

from journeys.models import Enrollment, SurveyResponse
from messaging.models import Consent, Contact, Message
from messaging.status import TIMESTAMP_FIELD

from .models import TEST_EVENT_TYPE

REPLY_BODY_LIMIT = 2000
Payload = dict[str, Any]


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`, as the Standard Webhooks examples write it."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def envelope(event_type: str, occurred_at: dt.datetime | None, data: dict[str, Any]) -> Payload:
    return {"type": event_type, "timestamp": iso(occurred_at or timezone.now()), "data": data}


def body_bytes(payload: Payload) -> bytes:
    """The exact bytes sent and signed. Keys are sorted because PostgreSQL's jsonb does not keep
    their order: every retry of one webhook-id then carries byte-identical content."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _contact(contact: Contact) -> dict[str, Any]:
    return {"id": contact.pk, "external_id": contact.external_id}


def message_status(
    *, event_type: str, message_id: Any, status: str, previous_status: str, kind: str
) -> Payload | None:
    message = Message.objects.select_related("contact", "template").filter(pk=message_id).first()
    if message is None:
        return None
    stamp = TIMESTAMP_FIELD.get(status)
    data = {
        "message": {
            "id": str(message.pk),
            "channel": message.channel,
            "status": status,
            "previous_status": previous_status,
            # e.g. "bounced" for an email that failed by bouncing
            "reason": kind if kind != status else None,
            "to": message.to_address,
            "template": message.template.slug if message.template else None,
            "source": message.source,
            "provider": message.provider,
            "provider_message_id": message.provider_message_id,
            "error_code": message.error_code,
            "error_message": message.error_message[:500],
            "created_at": iso(message.created_at),
        },
        "contact": _contact(message.contact),
    }
    return envelope(event_type, getattr(message, stamp, None) if stamp else None, data)


def message_replied(*, event_type: str, message_id: Any, keyword: str) -> Payload | None:
    message = Message.objects.select_related("contact").filter(pk=message_id).first()
    if message is None:
        return None
    data = {
        "message": {
            "id": str(message.pk),
            "channel": message.channel,
            "from": message.from_address,
            "to": message.to_address,
            "subject": message.subject,
            "body": message.body[:REPLY_BODY_LIMIT],
            "body_truncated": len(message.body) > REPLY_BODY_LIMIT,
            "keyword": keyword or None,
            "in_reply_to": str(message.in_reply_to_id) if message.in_reply_to_id else None,
            "attachments": len(message.media or []),
            "received_at": iso(message.received_at),
        },
        "contact": _contact(message.contact),
    }
    return envelope(event_type, message.received_at, data)


def consent_changed(
    *,
    event_type: str,
    contact_id: int,
    channel: str,
    status: str,
    previous_status: str,
    source: str,
) -> Payload | None:
    consent = (
        Consent.objects.select_related("contact")
        .filter(contact_id=contact_id, channel=channel)
        .first()
    )
    if consent is None:
        return None
    # The row may have changed again since; then its time is not this change's time.
    occurred_at = consent.changed_at if consent.status == status else None
    data = {
        "contact": _contact(consent.contact),
        "channel": channel,
        "status": status,
        "previous_status": previous_status,
        "source": source,
    }
    return envelope(event_type, occurred_at, data)


def survey_answered(*, event_type: str, response_id: int) -> Payload | None:
    response = (
        SurveyResponse.objects.select_related("contact", "journey", "step")
        .filter(pk=response_id)
        .first()
    )
    if response is None:
        return None
    data = {
        "survey_response": {
            "id": response.pk,
            "kind": response.step.config.get("kind", "nps"),
            "step": response.step.key,
            "status": response.status,
            "score": response.score,
            "nps_category": response.nps_category or None,
            "choice": response.choice or None,
            "answer": response.raw_answer[:REPLY_BODY_LIMIT],
            "question_message_id": str(response.question_id) if response.question_id else None,
            "answer_message_id": str(response.answer_id) if response.answer_id else None,
            "attempts": response.attempts,
            "answered_at": iso(response.answered_at),
        },
        "journey": {"id": response.journey_id, "slug": response.journey.slug},
        "enrollment": {"id": response.enrollment_id},
        "contact": _contact(response.contact),
    }
    return envelope(event_type, response.answered_at, data)


def journey_converted(*, event_type: str, enrollment_id: int) -> Payload | None:
    enrollment = (
        Enrollment.objects.select_related("contact", "journey").filter(pk=enrollment_id).first()
    )
    if enrollment is None:
        return None
    journey = enrollment.journey
    data = {
        "journey": {
            "id": journey.pk,
            "slug": journey.slug,
            "name": journey.name,
            "goal_event": journey.goal_event,
        },
        "enrollment": {
            "id": enrollment.pk,
            "state": enrollment.state,
            "reason": enrollment.exit_reason,
            "entered_at": iso(enrollment.entered_at),
            "ended_at": iso(enrollment.ended_at),
        },
        "contact": _contact(enrollment.contact),
    }
    return envelope(event_type, enrollment.ended_at, data)


def ping(*, subscription_id: int) -> Payload:
    return envelope(
        TEST_EVENT_TYPE,
        None,
        {"subscription": {"id": subscription_id}, "message": "A test delivery from Touchline."},
    )
