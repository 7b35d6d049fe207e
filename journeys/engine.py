"""Step execution: advance one enrollment until it waits or ends.

Each step kind has a handler that returns what happens next: go on (to a step key or the
following step), wait (until a time and/or an event), or end. Per-step working state lives in
`enrollment.context["step"]`, step outputs in `context["steps"][key]`, so a re-run after a
crash or a wake-up continues where it was. The row lock taken in `enrollment_advance` (one
enrollment) and `enrollments_advance` (a batch, what the scheduler runs) makes advancing the
same enrollment twice at once impossible.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from channels_app.channels import Channel
from messaging import policies
from messaging.conversations import contact_in_open_conversation, conversation_inbound_handled
from messaging.models import Message, Template, Touchpoint
from messaging.rendering import contact_context
from messaging.services import MessageRequestError, message_create, touchpoints_write

from . import services, signals
from .conditions import first_match
from .models import Enrollment, Event, Journey, JourneyMessage, Step, StepVisit, SurveyResponse
from .surveys import nps_category, parse_choice, parse_nps

logger = logging.getLogger(__name__)

MAX_STEPS_PER_ADVANCE = 50
END = "end"
CONVERSATION_RESOLVED = "conversation.resolved"
DEFAULT_CHANNEL_ORDER = [Channel.SMS, Channel.WHATSAPP, Channel.EMAIL]


@dataclass
class Continue:
    next_key: str = ""  # "" → the step's next_step, else the following one; "end" completes


@dataclass
class Wait:
    until: dt.datetime | None
    waiting_for: str = ""


@dataclass
class End:
    state: str
    reason: str = ""


SAVED_FIELDS = [
    "state",
    "current_step",
    "next_run_at",
    "waiting_for",
    "wait_until",
    "wake_event",
    "context",
    "updated_at",
]


def _update_rows(enrollments: list[Enrollment], names: list[str]) -> None:
    """One `UPDATE ... FROM (VALUES ...)` for these rows and fields. (QuerySet.bulk_update
    builds a CASE per field and row: 3 ms of Python per enrollment, more than the engine.)
    The casts are PostgreSQL's; elsewhere (the embedded SQLite) bulk_update does it."""
    if connection.vendor != "postgresql":
        Enrollment.objects.bulk_update(enrollments, names)
        return
    fields = [Enrollment._meta.pk] + [Enrollment._meta.get_field(name) for name in names]
    row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in fields) + ")"
    columns = [connection.ops.quote_name(f.column) for f in fields]
    sql = (
        "UPDATE {table} AS t SET {sets} FROM (VALUES {rows}) AS v ({columns}) WHERE t.{pk} = v.{pk}"
    )
    sql = sql.format(
        table=connection.ops.quote_name(Enrollment._meta.db_table),
        sets=", ".join(f"{c} = v.{c}" for c in columns[1:]),
        rows=", ".join([row] * len(enrollments)),
        columns=", ".join(columns),
        pk=columns[0],
    )
    params = [
        f.get_db_prep_save(getattr(enrollment, f.attname), connection)
        for enrollment in enrollments
        for f in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass
class Deferred:
    """Rows an advance of several enrollments writes in one statement each, later in their
    shared transaction: the enrollments' own rows (all of their ENDED_FIELDS, which include
    SAVED_FIELDS: the rows are locked and were read in this transaction), the engine's
    touchpoints and step visits."""

    enrollments: list[Enrollment] = field(default_factory=list)
    touchpoints: list[Touchpoint] = field(default_factory=list)
    visits: list[StepVisit] = field(default_factory=list)

    def write(self) -> None:
        if self.enrollments:
            updated_at = timezone.now()  # bulk_update does not run auto_now
            for enrollment in self.enrollments:
                enrollment.updated_at = updated_at
            _update_rows(self.enrollments, services.ENDED_FIELDS)
        touchpoints_write(self.touchpoints)
        if self.visits:
            StepVisit.objects.bulk_create(self.visits)
        self.enrollments, self.touchpoints, self.visits = [], [], []


@dataclass
class Run:
    enrollment: Enrollment
    steps: list[Step]
    now: dt.datetime
    deferred: Deferred | None = None
    by_key: dict[str, Step] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {s.key: s for s in self.steps}

    @property
    def journey(self):
        return self.enrollment.journey

    @property
    def contact(self):
        return self.enrollment.contact

    @property
    def event(self) -> dict[str, Any]:
        return self.enrollment.context.get("event", {})

    def output(self, step: Step, **values: Any) -> None:
        self.enrollment.context.setdefault("steps", {})[step.key] = {
            **self.enrollment.context.get("steps", {}).get(step.key, {}),
            **values,
        }

    def touch(self, kind: str, step: Step | None, dedupe: str | None = None, **data: Any) -> None:
        services.journey_touchpoint(
            self.enrollment,
            kind,
            data={"step": step.key if step else "", **data},
            dedupe=dedupe,
            occurred_at=self.now,
            channel=data.get("channel", ""),
            defer_to=self.deferred.touchpoints if self.deferred else None,
        )

    def end(self, state: str, reason: str = "") -> None:
        services.enrollment_end(
            self.enrollment,
            state=state,
            reason=reason,
            now=self.now,
            defer_to=self.deferred.touchpoints if self.deferred else None,
            save=self.deferred is None,
        )
        if self.deferred:
            self.deferred.enrollments.append(self.enrollment)

    def save(self) -> None:
        if self.deferred:
            self.deferred.enrollments.append(self.enrollment)
        else:
            self.enrollment.save(update_fields=SAVED_FIELDS)


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


# --- Sending (send and survey steps) --------------------------------------------------


def _channel_order(run: Run, config: dict[str, Any]) -> list[str]:
    first = config.get("channel") or "preferred"
    if first == "from_event":
        first = run.event.get("channel") or "preferred"
    if first == "preferred":
        first = run.contact.preferred_channel or ""
    fallbacks = config.get("fallback_channels")
    if fallbacks is None:
        fallbacks = DEFAULT_CHANNEL_ORDER
    order: list[str] = []
    for channel in [first, *fallbacks]:
        if channel in Channel.values and channel not in order:
            order.append(channel)
    return order


def send_on_first_allowed_channel(
    run: Run,
    step: Step,
    *,
    template_slug: str,
    tried: list[str],
    suffix: str = "",
    hold_in_message: bool = False,
) -> Message | Wait | None:
    """Create the step's message on the first channel policy allows; hold or fall back with a
    touchpoint for each decision. None when no channel can take it. A hold makes the
    enrollment wait, or, with `hold_in_message` (a fallback sent while the enrollment has
    moved on), becomes a message queued until the hold ends."""
    contact, journey = run.contact, run.journey
    templates = {t.channel: t for t in Template.objects.filter(slug=template_slug)}
    for channel in _channel_order(run, step.config):
        if channel in tried:
            continue
        template = templates.get(channel)
        address = contact.address_for(channel)
        if template is None:
            decision = policies.Decision(False, f"no {channel} template {template_slug!r}")
        else:
            decision = policies.evaluate_send(
                contact=contact,
                channel=channel,
                category=journey.category,
                address=address,
                now=run.now,
                has_body=bool(template.body or template.html_body),
                has_content_sid=bool(template.content_sid),
                quiet_hours=(journey.quiet_hours_start, journey.quiet_hours_end),
                cap_action=journey.frequency_cap_action,
            )
        if decision.held:
            run.touch(
                "send_held",
                step,
                dedupe=f"{step.pk}:held:{channel}:{decision.hold_until.isoformat()}",
                channel=channel,
                until=decision.hold_until.isoformat(),
                reason=decision.reason,
            )
            if not hold_in_message:
                return Wait(until=decision.hold_until)
        elif not decision.allowed:
            tried.append(channel)
            run.touch(
                "send_skipped",
                step,
                dedupe=f"{step.pk}{suffix}:skipped:{channel}",
                channel=channel,
                reason=decision.reason,
            )
            continue
        try:
            message, created = message_create(
                contact=contact,
                channel=channel,
                template=template,
                context=run.event,
                idempotency_key=f"journey:{run.enrollment.pk}:{step.pk}:{channel}{suffix}",
                source="journey",
                category=journey.category,
                decision=decision,
                metadata={"journey": journey.slug, "step": step.key, "at": run.now.isoformat()},
                # A template over a limit (or broken by this contact's data) becomes a failed
                # message with the reason on the timeline; its failure tries the fallback.
                fail_on_render_error=True,
            )
        except MessageRequestError as exc:
            tried.append(channel)
            run.touch("send_skipped", step, channel=channel, reason=f"template error: {exc}")
            continue
        if created:
            JourneyMessage.objects.create(
                message=message, enrollment=run.enrollment, step=step, journey=journey
            )
        if tried:
            run.touch("fell_back", step, channel=channel, skipped=list(tried))
        tried.append(channel)
        return message
    return None


def _send(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    tried = state.setdefault("tried", [])
    result = send_on_first_allowed_channel(
        run, step, template_slug=step.config.get("template", ""), tried=tried
    )
    if isinstance(result, Wait):
        return result
    if result is None:
        run.output(step, outcome="not_sent")
        return Continue()
    run.output(step, outcome="sent", channel=result.channel, message_id=str(result.pk))
    return Continue()


# --- Waiting --------------------------------------------------------------------------


def next_local_time(now: dt.datetime, at: dt.time, tz_name: str) -> dt.datetime:
    """The next moment the contact's wall clock shows `at` (after `now`)."""
    try:
        zone = ZoneInfo(tz_name or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(dt.UTC)


def _wait(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    if "until" not in state:
        if step.config.get("until_time"):
            at = dt.time.fromisoformat(step.config["until_time"])
            until = next_local_time(run.now, at, run.contact.timezone)
        else:
            until = run.now + dt.timedelta(seconds=int(step.config.get("duration_seconds", 0)))
        state["until"] = until.isoformat()
    until = _parse_time(state["until"])
    if run.now >= until:
        return Continue()
    return Wait(until=until)


def _wait_for_event(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    name = step.config["event"]
    if "until" not in state:
        timeout = step.config.get("timeout_seconds")
        state["until"] = (
            (run.now + dt.timedelta(seconds=int(timeout))).isoformat() if timeout else ""
        )
    wake = run.enrollment.wake_event
    if wake is not None and wake.name == name:
        run.output(step, outcome="event", event_id=wake.pk, properties=wake.properties)
        return Continue(step.config.get("on_event", ""))
    until = _parse_time(state["until"])
    if until is not None and run.now >= until:
        run.output(step, outcome="timeout")
        return Continue(step.config.get("on_timeout", ""))
    return Wait(until=until, waiting_for=name)


# --- Branching and surveys ------------------------------------------------------------


def branch_scope(run: Run) -> dict[str, Any]:
    return {
        "contact": contact_context(run.contact),
        "event": run.event,
        "steps": run.enrollment.context.get("steps", {}),
    }


def _branch(run: Run, step: Step, state: dict[str, Any]) -> Continue:
    target = first_match(step.config.get("rules", []), branch_scope(run))
    chosen = target or step.config.get("default", "")
    run.output(step, outcome=chosen or "next")
    return Continue(chosen)


def _survey_answer(run: Run, step: Step, body: str) -> dict[str, Any] | None:
    if step.config.get("kind", "nps") == "choice":
        choice = parse_choice(body, step.config.get("choices", []))
        return {"choice": choice} if choice else None
    score = parse_nps(body)
    return None if score is None else {"score": score, "category": nps_category(score)}


def _record_survey(
    run: Run,
    step: Step,
    state: dict[str, Any],
    status: str,
    answer: dict[str, Any],
    raw: str = "",
    answer_message_id: str | None = None,
) -> None:
    response, _ = SurveyResponse.objects.update_or_create(
        enrollment=run.enrollment,
        step=step,
        defaults={
            "journey": run.journey,
            "contact": run.contact,
            "question_id": state.get("question"),
            "answer_id": answer_message_id,
            "status": status,
            "raw_answer": raw[:2000],
            "score": answer.get("score"),
            "choice": answer.get("choice") or "",
            "nps_category": answer.get("category") or "",
            "attempts": state.get("asked", 1),
            "answered_at": run.now,
        },
    )
    run.output(
        step,
        outcome=status,
        score=answer.get("score"),
        choice=answer.get("choice"),
        category=answer.get("category"),
    )
    run.touch("survey_" + status, step, dedupe=f"{step.pk}:survey", answer=raw[:200], **answer)
    properties = {"journey": run.journey.slug, "step": step.key, "status": status, **answer}
    published = {
        "response_id": response.pk,
        "contact_id": run.contact.pk,
        "journey_slug": run.journey.slug,
        "step_key": step.key,
        "status": status,
        "score": answer.get("score"),
        "choice": answer.get("choice"),
        "nps_category": answer.get("category"),
    }
    transaction.on_commit(
        lambda: signals.survey_answered.send(sender=SurveyResponse, **published), robust=True
    )
    if status == SurveyResponse.Status.ANSWERED:
        if answer_message_id:
            # Taken as the answer: the reply does not wait for a human in the inbox.
            conversation_inbound_handled(message_id=answer_message_id, handled_by="survey")
        events = [
            services.internal_event(
                contact_id=run.contact.pk,
                name="survey.answered",
                properties=properties,
                key=f"survey:{run.enrollment.pk}:{step.pk}",
            )
        ]
        if answer.get("category"):
            events.append(
                services.internal_event(
                    contact_id=run.contact.pk,
                    name=f"survey.{answer['category']}",
                    properties=properties,
                    key=f"survey-category:{run.enrollment.pk}:{step.pk}",
                )
            )
        _ended_by(run, events)


def _ended_by(run: Run, events: list[Event]) -> None:
    """The events a step applied inline may have ended the running enrollment (a survey
    answer that is the journey's goal converts it). `_convert` ended the row from its own
    copy: take its ending over, so that `_run` stops there instead of overwriting it with
    the steps that follow (and keeps this run's outputs in the context)."""
    if not any(run.enrollment.pk in (e.result or {}).get("converted", []) for e in events):
        return
    run.enrollment.refresh_from_db(fields=ENDING_FIELDS)


# What enrollment_end sets (services.ENDED_FIELDS less what the run itself owns).
ENDING_FIELDS = ["state", "exit_reason", "ended_at", "next_run_at", "waiting_for", "wait_until"]


def _survey(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    timeout = dt.timedelta(seconds=int(step.config.get("timeout_seconds", 3 * 86400)))
    if "asked" not in state:
        sent = send_on_first_allowed_channel(
            run,
            step,
            template_slug=step.config.get("template", ""),
            tried=state.setdefault("tried", []),
        )
        if isinstance(sent, Wait):
            return sent
        if sent is None:
            run.output(step, outcome="not_sent", score=None)
            return Continue()
        state.update(asked=1, question=str(sent.pk), until=(run.now + timeout).isoformat())
        return Wait(until=run.now + timeout, waiting_for="message.replied")
    wake = run.enrollment.wake_event
    if wake is not None and wake.name == "message.replied":
        body = str(wake.properties.get("body", ""))
        answer = _survey_answer(run, step, body)
        if answer is not None:
            _record_survey(
                run,
                step,
                state,
                SurveyResponse.Status.ANSWERED,
                answer,
                body,
                wake.properties.get("message_id"),
            )
            return Continue()
        if state["asked"] < 2:
            run.enrollment.wake_event = None
            run.touch("survey_reasked", step, dedupe=f"{step.pk}:reask", answer=body[:200])
            sent = send_on_first_allowed_channel(
                run,
                step,
                template_slug=step.config.get("reprompt_template") or step.config["template"],
                tried=state.setdefault("reask_tried", []),
                suffix=":reask",
            )
            state.update(asked=2, until=(run.now + timeout).isoformat())
            if isinstance(sent, Message):
                state["question"] = str(sent.pk)
            return Wait(until=run.now + timeout, waiting_for="message.replied")
        _record_survey(
            run,
            step,
            state,
            SurveyResponse.Status.UNPARSEABLE,
            {},
            body,
            wake.properties.get("message_id"),
        )
        return Continue()
    until = _parse_time(state["until"])
    if run.now >= until:
        _record_survey(run, step, state, SurveyResponse.Status.TIMED_OUT, {})
        return Continue()
    return Wait(until=until, waiting_for="message.replied")


def _exit(run: Run, step: Step, state: dict[str, Any]) -> End:
    return End(Enrollment.State.EXITED, step.config.get("reason") or f"exit step {step.key}")


HANDLERS = {
    Step.Kind.SEND: _send,
    Step.Kind.WAIT: _wait,
    Step.Kind.WAIT_FOR_EVENT: _wait_for_event,
    Step.Kind.BRANCH: _branch,
    Step.Kind.SURVEY: _survey,
    Step.Kind.EXIT: _exit,
}


# --- The loop -------------------------------------------------------------------------


def _enter(run: Run, step: Step) -> dict[str, Any]:
    state = {"key": step.key, "started_at": run.now.isoformat()}
    run.enrollment.context["step"] = state
    visit = StepVisit(enrollment=run.enrollment, step=step, entered_at=run.now)
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
            .select_related("journey", "contact", "current_step", "wake_event")
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


ADVANCE_BATCH = 50  # enrollments per transaction (and per advance_enrollments task)
CONTACT_STEP_KINDS = {Step.Kind.SEND, Step.Kind.SURVEY, Step.Kind.BRANCH}


def _reads_contact(steps: list[Step]) -> bool:
    return any(
        s.kind in CONTACT_STEP_KINDS or (s.kind == Step.Kind.WAIT and s.config.get("until_time"))
        for s in steps
    )


def enrollments_advance(
    *, enrollment_ids: list[int], now: dt.datetime | None = None
) -> dict[int, str]:
    """Advance several enrollments (each as enrollment_advance would) in one transaction:
    one SKIP LOCKED query locks them, each journey's steps are read once, the engine's
    touchpoints and step visits are written in one statement each (ADVANCE_BATCH ids per
    transaction). If any of them raises, that transaction is rolled back and each of its
    enrollments is advanced in its own (enrollment_advance), so the error fails only its
    own enrollment. Returns the outcome per id."""
    now = now or timezone.now()
    results: dict[int, str] = {}
    for start in range(0, len(enrollment_ids), ADVANCE_BATCH):
        ids = enrollment_ids[start : start + ADVANCE_BATCH]
        try:
            with transaction.atomic():
                results.update(_advance_together(ids, now))
        except Exception:
            logger.warning(
                "Advancing %d enrollments together failed; advancing them one by one",
                len(ids),
                exc_info=True,
            )
            results.update({pk: enrollment_advance(enrollment_id=pk, now=now) for pk in ids})
    return results


def _advance_together(enrollment_ids: list[int], now: dt.datetime) -> dict[int, str]:
    results = dict.fromkeys(enrollment_ids, "skipped")
    live = Enrollment.objects.filter(state__in=Enrollment.LIVE_STATES)
    enrollments = list(
        live.select_for_update(skip_locked=True).filter(pk__in=enrollment_ids).order_by("pk")
    )
    if not enrollments:
        return results
    journeys = Journey.objects.prefetch_related("steps").in_bulk(
        {e.journey_id for e in enrollments}
    )
    steps_of = {pk: list(journey.steps.all()) for pk, journey in journeys.items()}
    step_by_id = {step.pk: step for steps in steps_of.values() for step in steps}

    def attach(enrollment: Enrollment) -> None:
        enrollment.journey = journeys[enrollment.journey_id]
        if enrollment.current_step_id in step_by_id:
            enrollment.current_step = step_by_id[enrollment.current_step_id]

    for enrollment in enrollments:
        attach(enrollment)
    prefetch_related_objects(
        [e for e in enrollments if _reads_contact(steps_of[e.journey_id])], "contact"
    )
    prefetch_related_objects([e for e in enrollments if e.wake_event_id], "wake_event")

    deferred = Deferred()
    contacts_seen: set[int] = set()
    for enrollment in enrollments:
        if enrollment.contact_id in contacts_seen:
            # An earlier run in this transaction may have ended or woken this one (a survey
            # answer is an event for the same contact, and events read and write the
            # contact's enrollments): write what is deferred, read this one again (it is
            # locked by us).
            deferred.write()
            enrollment = live.filter(pk=enrollment.pk).first()
            if enrollment is None:
                continue
            attach(enrollment)
        contacts_seen.add(enrollment.contact_id)
        if _wait_not_over(enrollment, now):
            results[enrollment.pk] = "waiting"
            continue
        held = _held(enrollment, now)
        if held:
            results[enrollment.pk] = held
            continue
        run = Run(enrollment, steps_of[enrollment.journey_id], now, deferred)
        results[enrollment.pk] = _run(run)
    deferred.write()
    return results


def enrollments_claim_due(
    *, now: dt.datetime | None = None, limit: int, lease_seconds: int
) -> list[int]:
    """Claim due enrollments (SKIP LOCKED) by pushing next_run_at out by a lease; if the
    worker dies, the lease expires and the scheduler claims them again."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Enrollment.objects.select_for_update(skip_locked=True)
            .filter(state__in=Enrollment.LIVE_STATES, next_run_at__lte=now)
            .order_by("next_run_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Enrollment.objects.filter(pk__in=ids).update(
                next_run_at=now + dt.timedelta(seconds=lease_seconds)
            )
    return ids


def run_due(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Claim and advance everything due, inline (tests, demos, the dry-run clock)."""
    now = now or timezone.now()
    ids = enrollments_claim_due(now=now, limit=limit, lease_seconds=60)
    enrollments_advance(enrollment_ids=ids, now=now)
    return len(ids)
