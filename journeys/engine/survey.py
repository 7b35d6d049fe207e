"""The survey step: ask, read the answer (re-asking once), record it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from messaging.conversations import conversation_inbound_handled
from messaging.models import Message

from .. import services, signals
from ..models import Event, Step, SurveyResponse
from ..surveys import nps_category, parse_choice, parse_nps
from .run import Continue, Run, Wait, _parse_time
from .sending import send_on_first_allowed_channel


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
    answer that is the journey's goal converts it, one that is its exit event exits it).
    event_effects ended the row from its own copy: take its ending over, so that `_run`
    stops there instead of overwriting it with the steps that follow (and keeps this run's
    outputs in the context)."""
    ended = {
        pk
        for e in events
        for pk in [*(e.result or {}).get("converted", []), *(e.result or {}).get("exited", [])]
    }
    if run.enrollment.pk not in ended:
        return
    run.enrollment.refresh_from_db(fields=ENDING_FIELDS)


# What enrollment_end sets (journeys.ending.ENDED_FIELDS less what the run itself owns).
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
