"""outbound's subscriptions to the messaging and journeys hooks (connected in apps.ready).

The hooks are sent after commit, inside the caller's flow (a provider callback, a worker):
a webhook problem is logged, never raised into it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from journeys.models import Enrollment, SurveyResponse
from messaging.models import ConsentStatus
from messaging.status import MessageStatus

from . import payloads, selectors, services
from .models import EventType

logger = logging.getLogger(__name__)

STATUS_EVENTS = {
    MessageStatus.SENT: EventType.MESSAGE_SENT,
    MessageStatus.DELIVERED: EventType.MESSAGE_DELIVERED,
    MessageStatus.FAILED: EventType.MESSAGE_FAILED,
    MessageStatus.UNDELIVERED: EventType.MESSAGE_FAILED,
}
CONSENT_EVENTS = {
    ConsentStatus.SUBSCRIBED: EventType.CONTACT_SUBSCRIBED,
    ConsentStatus.UNSUBSCRIBED: EventType.CONTACT_UNSUBSCRIBED,
}


def _publish(event_type: str, build: Callable[..., payloads.Payload | None], **kwargs: Any) -> None:
    try:
        services.event_publish(
            event_type=event_type, build=functools.partial(build, event_type=event_type, **kwargs)
        )
    except Exception:
        logger.exception("Could not publish webhook event %s (%r)", event_type, kwargs)


def on_message_status_changed(
    sender: Any, *, message_id: Any, status: str, previous_status: str, kind: str, **_: Any
) -> None:
    # Engagement (opened, clicked) is published with the status unchanged: not a move.
    event_type = STATUS_EVENTS.get(status)
    if event_type is None or status == previous_status:
        return
    _publish(
        event_type,
        payloads.message_status,
        message_id=message_id,
        status=status,
        previous_status=previous_status,
        kind=kind,
    )


def on_message_received(sender: Any, *, message_id: Any, keyword: str = "", **_: Any) -> None:
    _publish(
        EventType.MESSAGE_REPLIED, payloads.message_replied, message_id=message_id, keyword=keyword
    )


def on_consent_changed(
    sender: Any,
    *,
    contact_id: int,
    channel: str,
    status: str,
    previous_status: str,
    source: str,
    **_: Any,
) -> None:
    event_type = CONSENT_EVENTS.get(status)
    if event_type is None:
        return
    _publish(
        event_type,
        payloads.consent_changed,
        contact_id=contact_id,
        channel=channel,
        status=status,
        previous_status=previous_status,
        source=source,
    )


def on_survey_answered(sender: Any, *, response_id: int, status: str, **_: Any) -> None:
    # Timed-out and not-understood answers carry no score; they are not "answered".
    if status != SurveyResponse.Status.ANSWERED:
        return
    _publish(EventType.SURVEY_ANSWERED, payloads.survey_answered, response_id=response_id)


def on_enrollment_ended(sender: Any, *, enrollment_id: int, state: str, **_: Any) -> None:
    if state != Enrollment.State.CONVERTED:
        return
    _publish(EventType.JOURNEY_CONVERTED, payloads.journey_converted, enrollment_id=enrollment_id)


def on_subscription_changed(sender: Any, **_: Any) -> None:
    # Forget now, and again once committed: an event published by another thread of this
    # process between the two may have read the table before the change was visible.
    selectors.forget_subscribed_event_types()
    transaction.on_commit(selectors.forget_subscribed_event_types)
