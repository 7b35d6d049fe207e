"""The simple step kinds: waits, branches, A/B splits, exits."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from messaging.rendering import contact_context

from ..conditions import first_match
from ..experiments import VARIANT_OUTCOME, split_variant
from ..keyed import event_matches
from ..models import Enrollment, Step
from .run import Continue, End, Run, Wait, _parse_time


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


def _wake_matches(run: Run, step: Step, wake: Any) -> bool:
    """A keyed wait (config "match") only takes the event for its own key (_wake already
    chose it in SQL; this guards against a stale wake_event)."""
    match = step.config.get("match")
    if not match:
        return True
    trigger = run.enrollment.trigger_event
    return event_matches(match, wake.properties, trigger.properties if trigger else None)


def _wait_for_event(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    name = step.config["event"]
    if "until" not in state:
        timeout = step.config.get("timeout_seconds")
        state["until"] = (
            (run.now + dt.timedelta(seconds=int(timeout))).isoformat() if timeout else ""
        )
    wake = run.enrollment.wake_event
    if wake is not None and wake.name == name and _wake_matches(run, step, wake):
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


def _split(run: Run, step: Step, state: dict[str, Any]) -> Continue:
    """Send the contact down its variant (the same one on every enrollment and version), and
    record it: the visit's outcome "variant:<key>", `steps.<key>.variant` in the context."""
    variant = split_variant(
        journey_slug=run.journey.slug,
        step_key=step.key,
        contact_id=run.enrollment.contact_id,
        variants=step.config.get("variants") or [],
    )
    key, goto = str(variant["key"]), variant.get("goto") or ""
    run.output(step, outcome=VARIANT_OUTCOME + key, variant=key)
    run.visit_outcome(step, VARIANT_OUTCOME + key)
    run.touch("split_variant", step, dedupe=f"{step.pk}:variant", variant=key, goto=goto)
    return Continue(goto)


def _exit(run: Run, step: Step, state: dict[str, Any]) -> End:
    return End(Enrollment.State.EXITED, step.config.get("reason") or f"exit step {step.key}")
