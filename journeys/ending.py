"""How an enrollment ends (completed, converted, exited, failed) and how a journey writes to
the contact's timeline. Shared by services, the engine and event_effects (which services
imports: this module imports neither)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.models import Direction, Touchpoint
from messaging.services import touchpoint_record

from . import signals
from .models import Enrollment


def journey_touchpoint(
    enrollment: Enrollment,
    kind: str,
    *,
    data: dict[str, Any] | None = None,
    dedupe: str | None = None,
    occurred_at: dt.datetime | None = None,
    channel: str = "",
    defer_to: list[Touchpoint] | None = None,
) -> None:
    """A journey's entry on the contact's timeline, naming the journey and enrollment
    (appended to `defer_to` instead of written when given: see touchpoint_record)."""
    touchpoint_record(
        contact_id=enrollment.contact_id,
        kind=kind,
        direction=Direction.INTERNAL,
        channel=channel,
        occurred_at=occurred_at,
        data={
            "journey": enrollment.journey.slug,
            "journey_name": enrollment.journey.name,
            "enrollment": enrollment.pk,
            **(data or {}),
        },
        dedupe_key=f"enr:{enrollment.pk}:{dedupe}" if dedupe else None,
        defer_to=defer_to,
    )


ENDED_FIELDS = [
    "state",
    "exit_reason",
    "ended_at",
    "next_run_at",
    "waiting_for",
    "wait_until",
    "updated_at",
    "current_step",
    "context",
    "wake_event",
]


def enrollment_end(
    enrollment: Enrollment,
    *,
    state: str,
    reason: str = "",
    now: dt.datetime | None = None,
    defer_to: list[Touchpoint] | None = None,
    save: bool = True,
) -> None:
    """Finish an enrollment (completed, converted, exited, failed) with its touchpoint.
    With `defer_to` the touchpoint is appended to it, and with `save=False` the row is left
    to the caller (ENDED_FIELDS), to write in the same transaction."""
    now = now or timezone.now()
    enrollment.state = state
    enrollment.exit_reason = reason[:255]
    enrollment.ended_at = now
    enrollment.next_run_at = None
    enrollment.waiting_for = ""
    enrollment.wait_until = None
    if save:
        enrollment.save(update_fields=ENDED_FIELDS)
    kind = {
        Enrollment.State.COMPLETED: "journey_completed",
        Enrollment.State.CONVERTED: "converted",
        Enrollment.State.EXITED: "journey_exited",
        Enrollment.State.FAILED: "journey_failed",
    }[state]
    journey_touchpoint(
        enrollment,
        kind,
        data={"reason": reason},
        dedupe=kind,
        occurred_at=now,
        defer_to=defer_to,
    )
    ids = (enrollment.pk, enrollment.contact_id, enrollment.journey.slug)
    transaction.on_commit(
        lambda: signals.enrollment_ended.send(
            sender=Enrollment,
            enrollment_id=ids[0],
            contact_id=ids[1],
            journey_slug=ids[2],
            state=state,
            reason=reason,
        ),
        robust=True,
    )
