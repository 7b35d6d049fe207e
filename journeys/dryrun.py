"""Dry run: the real engine on a simulated clock, inside a transaction that is rolled back.

Messages are created exactly as a real run would create them (policies applied), but their
delivery is only queued on commit, and the transaction never commits: no provider is called
and nothing stays behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.models import Contact, Message, Touchpoint

from . import engine, services
from .experiments import in_holdout
from .keyed import matching_properties
from .models import Enrollment, Event, Journey, JourneyMessage

MAX_ADVANCES = 60


@dataclass
class DryRunLine:
    at: dt.datetime
    offset: str
    step: str
    what: str
    channel: str = ""
    detail: str = ""


@dataclass
class DryRunResult:
    lines: list[DryRunLine] = field(default_factory=list)
    outcome: str = ""
    problems: list[str] = field(default_factory=list)


class _Rollback(Exception):
    pass


def _offset(start: dt.datetime, at: dt.datetime) -> str:
    seconds = int((at - start).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return "+" + ("".join(parts) or "0m")


_DESCRIBE = {
    "journey_entered": "enters the journey",
    "send_held": "send held",
    "send_skipped": "send skipped",
    "fell_back": "falls back to another channel",
    "survey_answered": "survey answered",
    "survey_unparseable": "survey answer not understood",
    "survey_timed_out": "survey not answered",
    "survey_reasked": "survey question asked again",
    "journey_completed": "completes the journey",
    "journey_exited": "exits the journey",
    "journey_failed": "journey failed",
    "converted": "converts (goal event)",
    "journey_paused": "paused",
    "split_variant": "takes a split variant",
    "journey_holdout": "held out (control group): nothing is sent",
}


def dry_run(
    *,
    journey: Journey,
    contact: Contact,
    properties: dict[str, Any] | None = None,
    replies: dict[str, str] | None = None,
    start: dt.datetime | None = None,
) -> DryRunResult:
    """Simulate one contact through `journey` (draft or live). `replies` maps a survey or
    wait_for_event step key to the text the customer answers with; unanswered steps time out.
    """
    from .validation import journey_problems

    result = DryRunResult(problems=journey_problems(journey))
    start = start or timezone.now()
    replies = dict(replies or {})
    try:
        with transaction.atomic():
            _simulate(journey, contact, properties or {}, replies, start, result)
            raise _Rollback
    except _Rollback:
        pass
    return result


def _simulate(journey, contact, properties, replies, start, result) -> None:
    first_touchpoint = Touchpoint.objects.order_by("-id").values_list("id", flat=True).first() or 0
    event = Event.objects.create(
        name=journey.trigger_event,
        contact=contact,
        properties=properties,
        occurred_at=start,
        source=Event.Source.INTERNAL,
    )
    holdout = in_holdout(
        journey_slug=journey.slug, contact_id=contact.pk, percent=journey.holdout_percent
    )
    enrollment = Enrollment.objects.create(
        journey=journey,
        contact=contact,
        trigger_event=event,
        # every_time sidesteps the live-enrollment constraint for a contact already enrolled
        entry_policy=Journey.EntryPolicy.EVERY_TIME,
        journey_version=journey.version,
        current_step=None if holdout else journey.steps.first(),
        next_run_at=None if holdout else start,
        context={"event": {"name": event.name, "id": event.pk, **properties}, "steps": {}},
        holdout=holdout,
    )
    services.journey_touchpoint(enrollment, "journey_entered", occurred_at=start, dedupe="entered")
    if holdout:
        # As the real entry does: this contact is in the control group and gets nothing.
        services.enrollment_hold_out(enrollment, now=start)
    clock = start
    for _ in range(MAX_ADVANCES):
        engine.enrollment_advance(enrollment_id=enrollment.pk, now=clock)
        enrollment.refresh_from_db()
        if enrollment.state not in Enrollment.LIVE_STATES:
            break
        step_key = enrollment.current_step.key if enrollment.current_step else ""
        if enrollment.waiting_for and step_key in replies:
            clock = clock + dt.timedelta(minutes=5)
            services.event_ingest(
                name=enrollment.waiting_for,
                contact=contact,
                properties={
                    # A keyed wait only takes the event for its own key (e.g. the same cart).
                    **matching_properties(enrollment.current_step.config.get("match"), properties),
                    "body": replies.pop(step_key),
                    "channel": "dry-run",
                },
                occurred_at=clock,
                source=Event.Source.INTERNAL,
            )
            continue
        if enrollment.next_run_at is None:
            result.outcome = f"waits for {enrollment.waiting_for or 'an event'} with no timeout"
            break
        clock = max(clock, enrollment.next_run_at)
    if enrollment.holdout:
        result.outcome = "Held out: in the control group, this contact is sent nothing"
    result.outcome = result.outcome or enrollment.get_state_display()
    _collect(enrollment, first_touchpoint, start, result)


def _collect(enrollment, first_touchpoint, start, result) -> None:
    messages = {
        str(link.message_id): link.message
        for link in JourneyMessage.objects.filter(enrollment=enrollment).select_related("message")
    }
    touchpoints = Touchpoint.objects.filter(
        contact=enrollment.contact, id__gt=first_touchpoint
    ).order_by("occurred_at", "id")
    for tp in touchpoints:
        data = tp.data or {}
        if data.get("enrollment") not in (enrollment.pk, None):
            continue
        step = data.get("step", "")
        if tp.kind.startswith("step_"):
            continue
        if tp.kind == "queued" and tp.message_id and str(tp.message_id) in messages:
            message: Message = messages[str(tp.message_id)]
            at = _message_time(enrollment, message) or tp.occurred_at
            result.lines.append(
                DryRunLine(
                    at=at,
                    offset=_offset(start, at),
                    step=message.metadata.get("step", ""),
                    what=f"sends {message.get_channel_display()}",
                    channel=message.channel,
                    detail=f"to {message.to_address}: " + (message.subject or message.body)[:200],
                )
            )
            continue
        if tp.kind in _DESCRIBE:
            detail = data.get("reason") or data.get("until") or data.get("answer") or ""
            if tp.kind == "split_variant":
                detail = f"variant {data.get('variant')} → {data.get('goto') or 'next step'}"
            if tp.kind == "survey_answered":
                detail = (
                    f"score {data.get('score')}"
                    if data.get("score") is not None
                    else (data.get("choice") or "")
                )
            result.lines.append(
                DryRunLine(
                    at=tp.occurred_at,
                    offset=_offset(start, tp.occurred_at),
                    step=step,
                    what=_DESCRIBE[tp.kind],
                    channel=tp.channel,
                    detail=str(detail)[:200],
                )
            )
    result.lines.sort(key=lambda line: line.at)


def _message_time(enrollment: Enrollment, message: Message) -> dt.datetime | None:
    """The simulated time of a send (the engine notes its clock in the message)."""
    at = (message.metadata or {}).get("at")
    return dt.datetime.fromisoformat(at) if at else None
