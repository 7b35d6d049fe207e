"""Checks a journey must pass before it can be activated."""

from __future__ import annotations

import datetime as dt
from typing import Any

from channels_app.channels import Channel
from messaging.models import Template, Topic

from .experiments import variants_problems
from .keyed import entry_key_problems, match_problems
from .models import Journey, Step
from .segment_triggers import segment_trigger_problems

END = "end"
SENDING_KINDS = (Step.Kind.SEND, Step.Kind.SURVEY)


def step_channels(config: dict[str, Any]) -> list[str]:
    """The channels a sending step may use: its own, then its fallbacks."""
    first = config.get("channel") or "preferred"
    fallbacks = config.get("fallback_channels")
    if fallbacks is None:
        fallbacks = list(Channel.values)
    named = [first] if first in Channel.values else []
    if first in ("preferred", "from_event"):
        # Any channel may be chosen at run time: every fallback must be sendable.
        named = []
        if not fallbacks:
            fallbacks = list(Channel.values)
    return list(dict.fromkeys([*named, *fallbacks]))


def _targets(step: Step) -> list[str]:
    config = step.config or {}
    if step.kind == Step.Kind.BRANCH:
        return [r.get("goto", "") for r in config.get("rules", [])] + [config.get("default", "")]
    if step.kind == Step.Kind.WAIT_FOR_EVENT:
        return [config.get("on_event", ""), config.get("on_timeout", "")]
    if step.kind == Step.Kind.SPLIT:
        variants = config.get("variants")
        if isinstance(variants, list):
            return [str(v.get("goto") or "") for v in variants if isinstance(v, dict)]
    return []


def _successors(step: Step, steps: list[Step]) -> set[str]:
    index = steps.index(step)
    following = steps[index + 1].key if index + 1 < len(steps) else END
    if step.kind == Step.Kind.EXIT:
        return set()
    default = step.next_step or following
    if step.kind in (Step.Kind.BRANCH, Step.Kind.SPLIT):
        return {t or following for t in _targets(step)}
    if step.kind == Step.Kind.WAIT_FOR_EVENT:
        return {t or default for t in _targets(step)}
    return {default}


def _positive(value: Any) -> bool:
    try:
        return int(value) > 0
    except (TypeError, ValueError):
        return False


def step_problems(step: Step, keys: set[str], templates: set[tuple[str, str]]) -> list[str]:
    config, where = step.config or {}, f"Step “{step.key}”"
    problems = []
    for target in [*_targets(step), step.next_step]:
        if target and target != END and target not in keys:
            problems.append(f"{where} goes to “{target}”, which is not a step.")
    if step.kind in SENDING_KINDS:
        slug = config.get("template", "")
        if not slug:
            problems.append(f"{where} has no template.")
        else:
            missing = [c for c in step_channels(config) if (slug, c) not in templates]
            if missing:
                problems.append(
                    f"{where}: template “{slug}” has no version for {', '.join(missing)}."
                )
        if step.kind == Step.Kind.SURVEY:
            if config.get("kind", "nps") == "choice" and not config.get("choices"):
                problems.append(f"{where} is a choice survey without choices.")
            if "timeout_seconds" in config and not _positive(config["timeout_seconds"]):
                problems.append(f"{where} needs a positive timeout.")
            reprompt = config.get("reprompt_template")
            if reprompt and any((reprompt, c) not in templates for c in step_channels(config)):
                problems.append(f"{where}: re-ask template “{reprompt}” is missing a channel.")
    elif step.kind == Step.Kind.WAIT:
        if config.get("until_time"):
            try:
                dt.time.fromisoformat(config["until_time"])
            except (TypeError, ValueError):
                problems.append(f"{where}: “{config['until_time']}” is not a time like 09:00.")
        elif not _positive(config.get("duration_seconds")):
            problems.append(f"{where} must wait a positive duration.")
    elif step.kind == Step.Kind.WAIT_FOR_EVENT:
        if not config.get("event"):
            problems.append(f"{where} does not say which event to wait for.")
        if "timeout_seconds" in config and not _positive(config["timeout_seconds"]):
            problems.append(f"{where} needs a positive timeout.")
        problems.extend(match_problems(config.get("match"), where))
    elif step.kind == Step.Kind.SPLIT:
        problems.extend(f"{where}: {p}" for p in variants_problems(config.get("variants")))
    return problems


def journey_problems(journey: Journey, steps: list[Step] | None = None) -> list[str]:
    """Human-readable reasons the journey cannot be activated; empty when it can."""
    steps = list(journey.steps.all()) if steps is None else steps
    if not journey.trigger_event:
        return ["The journey has no trigger event."]
    if not steps:
        return ["The journey has no steps."]
    keyed = (
        match_problems(journey.goal_match, "Goal")
        + match_problems(journey.exit_match, "Exit")
        + entry_key_problems(journey.entry_key)
        + segment_trigger_problems(journey)
    )
    if journey.topic_id and not Topic.objects.filter(pk=journey.topic_id, is_active=True).exists():
        # An inactive topic is not on the preference page: its contacts could not leave it.
        keyed.append(
            "Topic: that topic is inactive (hidden from the preference center): "
            "activate it or choose another."
        )
    if journey.goal_match and not journey.goal_event:
        keyed.append("Goal: a goal match needs a goal event.")
    if journey.exit_match and not journey.exit_event:
        keyed.append("Exit: an exit match needs an exit event.")
    keys = [s.key for s in steps]
    problems = keyed + [
        f"Two steps are called “{k}”." for k in sorted({k for k in keys if keys.count(k) > 1})
    ]
    if END in keys:
        problems.append("“end” is reserved: rename that step.")
    slugs = {s.config.get("template") for s in steps} | {
        s.config.get("reprompt_template") for s in steps
    }
    templates = set(Template.objects.filter(slug__in=slugs - {None}).values_list("slug", "channel"))
    for step in steps:
        problems.extend(step_problems(step, set(keys), templates))
    reachable, frontier = set(), [steps[0].key]
    by_key = {s.key: s for s in steps}
    while frontier:
        key = frontier.pop()
        if key in reachable or key not in by_key:
            continue
        reachable.add(key)
        frontier.extend(_successors(by_key[key], steps))
    problems.extend(
        f"Step “{s.key}” can never be reached." for s in steps if s.key not in reachable
    )
    return problems
