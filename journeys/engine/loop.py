"""The loop: run one enrollment's steps until it waits or ends."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.conversations import contact_in_open_conversation

from .. import services
from ..models import Enrollment, Step, StepVisit
from .run import Continue, End, Run, Wait
from .sending import _send
from .steps import _branch, _exit, _split, _wait, _wait_for_event
from .survey import _survey

# The package's logger: log lines keep the name they had before it was split.
logger = logging.getLogger(__package__)

MAX_STEPS_PER_ADVANCE = 50
END = "end"
CONVERSATION_RESOLVED = "conversation.resolved"


HANDLERS = {
    Step.Kind.SEND: _send,
    Step.Kind.WAIT: _wait,
    Step.Kind.WAIT_FOR_EVENT: _wait_for_event,
    Step.Kind.BRANCH: _branch,
    Step.Kind.SURVEY: _survey,
    Step.Kind.SPLIT: _split,
    Step.Kind.EXIT: _exit,
}


def _enter(run: Run, step: Step) -> dict[str, Any]:
    state = {"key": step.key, "started_at": run.now.isoformat()}
    run.enrollment.context["step"] = state
    visit = StepVisit(enrollment=run.enrollment, step=step, entered_at=run.now)
    run.visit = visit
    if run.deferred:
        run.deferred.visits.append(visit)
    else:
        visit.save(force_insert=True)
    run.touch(f"step_{step.kind}", step, dedupe=f"{step.pk}:entered")
    return state


def _next_step(run: Run, step: Step, result: Continue) -> Step | None:
    key = result.next_key or step.next_step
    if key == END:
        return None
    if key:
        if key not in run.by_key:
            raise ValueError(f"step {step.key!r} points to unknown step {key!r}")
        return run.by_key[key]
    index = run.steps.index(step)
    return run.steps[index + 1] if index + 1 < len(run.steps) else None


def _run(run: Run) -> str:
    enrollment = run.enrollment
    for _ in range(MAX_STEPS_PER_ADVANCE):
        step = enrollment.current_step
        if step is None:
            run.end(Enrollment.State.COMPLETED)
            return "completed"
        state = enrollment.context.get("step") or {}
        if state.get("key") != step.key:
            state = _enter(run, step)
        result = HANDLERS[step.kind](run, step, state)
        if enrollment.state not in Enrollment.LIVE_STATES:
            # Ended by an event the step applied inline (_ended_by): keep that ending.
            enrollment.context["step"] = state
            run.save()
            return enrollment.state
        enrollment.context["step"] = state
        if isinstance(result, Wait):
            enrollment.state = Enrollment.State.WAITING
            enrollment.next_run_at = result.until
            enrollment.wait_until = result.until
            enrollment.waiting_for = result.waiting_for
            run.save()
            return "waiting"
        if isinstance(result, End):
            run.end(result.state, result.reason)
            return result.state
        next_step = _next_step(run, step, result)
        enrollment.current_step = next_step
        enrollment.wake_event = None
        enrollment.waiting_for = ""
        enrollment.wait_until = None
        enrollment.state = Enrollment.State.ACTIVE
        enrollment.context["step"] = {}
    raise RuntimeError(f"more than {MAX_STEPS_PER_ADVANCE} steps in one go: a loop?")


PAUSED_RECHECK = dt.timedelta(minutes=5)


def _held(enrollment: Enrollment, now: dt.datetime) -> str:
    """Hold an enrollment whose journey is paused, or whose contact a staff member is talking
    to (marketing only): it stays on its step and resumes later."""
    if enrollment.journey.status == enrollment.journey.Status.PAUSED:
        enrollment.next_run_at = now + PAUSED_RECHECK
        enrollment.save(update_fields=["next_run_at", "updated_at"])
        return "paused"
    if enrollment.journey.category == enrollment.journey.Category.MARKETING and (
        contact_in_open_conversation(contact_id=enrollment.contact_id)
    ):
        enrollment.state = Enrollment.State.WAITING
        enrollment.waiting_for = CONVERSATION_RESOLVED
        enrollment.next_run_at = None
        enrollment.wait_until = None
        enrollment.wake_event = None
        enrollment.save(
            update_fields=[
                "state",
                "waiting_for",
                "next_run_at",
                "wait_until",
                "wake_event",
                "updated_at",
            ]
        )
        services.journey_touchpoint(
            enrollment,
            "journey_paused",
            data={"reason": "a staff member is in a conversation with the contact"},
            occurred_at=now,
        )
        return "paused"
    return ""


def _wait_not_over(enrollment: Enrollment, now: dt.datetime) -> bool:
    """Woken early (a duplicate task or a stale claim): back to sleep until its time."""
    if (
        enrollment.state == Enrollment.State.WAITING
        and enrollment.wake_event_id is None
        and enrollment.wait_until is not None
        and enrollment.wait_until > now
    ):
        enrollment.next_run_at = enrollment.wait_until
        enrollment.save(update_fields=["next_run_at", "updated_at"])
        return True
    return False


def enrollment_advance(*, enrollment_id: int, now: dt.datetime | None = None) -> str:
    """Run one enrollment until it waits or ends, in its own transaction; an error marks it
    failed. A locked (busy) or finished one is skipped."""
    now = now or timezone.now()
    with transaction.atomic():
        enrollment = (
            Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("journey__topic", "contact", "current_step", "wake_event")
            .filter(pk=enrollment_id, state__in=Enrollment.LIVE_STATES)
            .first()
        )
        if enrollment is None:
            return "skipped"
        if _wait_not_over(enrollment, now):
            return "waiting"
        held = _held(enrollment, now)
        if held:
            return held
        run = Run(enrollment=enrollment, steps=list(enrollment.journey.steps.all()), now=now)
        try:
            with transaction.atomic():
                return _run(run)
        except Exception as exc:
            logger.exception("Enrollment %s failed", enrollment_id)
            enrollment.refresh_from_db()
            services.enrollment_end(
                enrollment, state=Enrollment.State.FAILED, reason=f"{exc}"[:255], now=now
            )
            return "failed"
