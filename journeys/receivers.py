"""journeys' subscriptions to what messaging publishes: replies and statuses become events
journeys can wait for, and a failed journey send falls back to the step's next channel."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.models import Message

from . import engine, services
from .models import Enrollment, Journey, JourneyMessage

logger = logging.getLogger(__name__)

FALLBACK_STATUSES = {"failed", "undelivered", "skipped"}
# Status/engagement kinds offered to journeys as `message.<kind>` events.
EVENT_KINDS = {"delivered", "read", "failed", "undelivered", "opened", "clicked", "bounced"}


def on_message_received(
    sender: Any,
    *,
    message_id,
    contact_id: int,
    channel: str,
    in_reply_to_id,
    keyword: str,
    **_: Any,
) -> None:
    body = Message.objects.filter(pk=message_id).values_list("body", flat=True).first() or ""
    services.internal_event(
        contact_id=contact_id,
        name="message.replied",
        properties={
            "message_id": str(message_id),
            "channel": channel,
            "in_reply_to": str(in_reply_to_id) if in_reply_to_id else None,
            "body": body[:2000],
            "keyword": keyword,
        },
        key=f"replied:{message_id}",
    )


def _wanted(contact_id: int, name: str) -> bool:
    return (
        Enrollment.objects.filter(
            contact_id=contact_id, state=Enrollment.State.WAITING, waiting_for=name
        ).exists()
        or Journey.objects.filter(status=Journey.Status.ACTIVE, trigger_event=name).exists()
    )


def on_message_status_changed(
    sender: Any, *, message_id, contact_id: int, channel: str, status: str, kind: str, **_: Any
) -> None:
    if status in FALLBACK_STATUSES and kind in FALLBACK_STATUSES:
        fall_back(message_id=message_id)
    if kind in EVENT_KINDS:
        name = f"message.{kind}"
        if _wanted(contact_id, name):
            services.internal_event(
                contact_id=contact_id,
                name=name,
                properties={"message_id": str(message_id), "channel": channel},
                key=f"{kind}:{message_id}",
            )


def fall_back(*, message_id) -> None:
    """A journey message that failed or was skipped: try the step's next channel."""
    link = (
        JourneyMessage.objects.select_related("enrollment__journey", "enrollment__contact", "step")
        .filter(message_id=message_id)
        .first()
    )
    if link is None:
        return
    with transaction.atomic():
        enrollment = (
            Enrollment.objects.select_for_update(of=("self",))
            .select_related("journey", "contact")
            .get(pk=link.enrollment_id)
        )
        tried = list(
            JourneyMessage.objects.filter(enrollment=enrollment, step=link.step).values_list(
                "message__channel", flat=True
            )
        )
        run = engine.Run(enrollment=enrollment, steps=[link.step], now=timezone.now())
        result = engine.send_on_first_allowed_channel(
            run,
            link.step,
            template_slug=link.step.config.get("template", ""),
            tried=tried,
            suffix=":fallback",
            hold_in_message=True,
        )
        if isinstance(result, Message):
            run.output(
                link.step,
                channel=result.channel,
                message_id=str(result.pk),
                fell_back_from=str(message_id),
            )
            enrollment.save(update_fields=["context", "updated_at"])


def on_conversation_changed(sender: Any, *, contact_id: int, status: str, **_: Any) -> None:
    """A resolved conversation resumes the contact's paused marketing enrollments."""
    if status == "resolved":
        services.internal_event(
            contact_id=contact_id,
            name=engine.CONVERSATION_RESOLVED,
            properties={},
            key=f"conversation-resolved:{contact_id}:{timezone.now().timestamp()}",
        )
