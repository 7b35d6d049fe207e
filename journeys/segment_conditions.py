"""The segment condition on event history, `{"event": "order.completed", …}`, keyed
follow-ups (`followed_by` / `not_followed_by`: "added cart X and did not order cart X within
a day"), and the journey-side conditions (segment_journeys.py). Events live in journeys, so
journeys registers them with audiences at start-up (audiences never imports journeys)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.lookups import Exact

from audiences import predicates
from audiences.registry import CompileContext, ConditionType, Errors, register_condition
from audiences.windows import (
    WINDOW_KEYS,
    count_q,
    is_whole,
    validate_count,
    validate_window,
    window_q,
)

from . import segment_journeys
from .keyed import NAME, TRIGGER
from .models import Event

MAX_WHERE = 20
MAX_MATCH = 10
MAX_FOLLOW_HOURS = 24 * 3650
FOLLOW_UPS = ("followed_by", "not_followed_by")
FOLLOW_KEYS = frozenset({"event", "match", "where", "within_hours", "within_days"})


def _validate_name(value: Any, path: str, errors: Errors) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 120:
        errors.add(path, "An event name (1-120 characters).")


def _validate_where(where: Any, path: str, errors: Errors) -> None:
    if not isinstance(where, list) or len(where) > MAX_WHERE:
        errors.add(path, f"A list of at most {MAX_WHERE} property conditions.")
        return
    for i, item in enumerate(where):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.add(item_path, 'An object, e.g. {"property": "total", "op": "gte", "value": 1}.')
            continue
        for key in sorted(set(item) - {"property", "op", "value"}):
            errors.add(f"{item_path}.{key}", "Unknown field.")
        predicates.validate_key(item.get("property"), f"{item_path}.property", errors)
        predicates.validate_op_value(item, item_path, errors)


def _property_name(name: Any) -> bool:
    return isinstance(name, str) and bool(NAME.match(name)) and "__" not in name


def _validate_match(match: Any, path: str, errors: Errors) -> None:
    """The keyed-event syntax of journeys/keyed.py: `{"cart_id": "trigger.cart_id"}` (equal
    to the first event's property) or a fixed string, number or boolean."""
    if not isinstance(match, dict) or not 0 < len(match) <= MAX_MATCH:
        errors.add(path, f'An object of 1-{MAX_MATCH} keys, e.g. {{"cart_id": "trigger.cart_id"}}.')
        return
    for name, expected in match.items():
        where = f"{path}.{name}"
        if not _property_name(name):
            errors.add(where, "A property name (letters, digits, _; starting with a letter).")
        elif isinstance(expected, str) and expected.startswith(TRIGGER):
            if not _property_name(expected[len(TRIGGER) :]):
                errors.add(where, f"“{expected}” does not name a property of the first event.")
        elif not predicates.is_scalar(expected):
            errors.add(where, "“trigger.<property>”, or a string, number or boolean.")


def _validate_follow_up(cond: dict[str, Any], path: str, errors: Errors) -> None:
    keys = [k for k in FOLLOW_UPS if k in cond]
    for key in keys[1:]:
        errors.add(f"{path}.{key}", "Use one of followed_by / not_followed_by.")
    if not keys:
        return
    path = f"{path}.{keys[0]}"
    follow = cond[keys[0]]
    if not isinstance(follow, dict):
        errors.add(path, 'An object, e.g. {"event": "order.completed", "within_hours": 24}.')
        return
    for key in sorted(set(follow) - FOLLOW_KEYS):
        errors.add(f"{path}.{key}", "Unknown field.")
    _validate_name(follow.get("event"), f"{path}.event", errors)
    if "match" in follow:
        _validate_match(follow["match"], f"{path}.match", errors)
    if "where" in follow:
        _validate_where(follow["where"], f"{path}.where", errors)
    if "within_hours" in follow and "within_days" in follow:
        errors.add(f"{path}.within_days", "Use one of within_hours / within_days.")
    if "within_hours" in follow and not is_whole(follow["within_hours"], 1, MAX_FOLLOW_HOURS):
        errors.add(f"{path}.within_hours", f"A whole number of hours, 1-{MAX_FOLLOW_HOURS}.")
    if "within_days" in follow and not is_whole(follow["within_days"], 1, 3650):
        errors.add(f"{path}.within_days", "A whole number of days, 1-3650.")


def _validate(cond: dict[str, Any], path: str, errors: Errors) -> None:
    _validate_name(cond.get("event"), f"{path}.event", errors)
    validate_count(cond, path, errors)
    validate_window(cond, path, errors)
    _validate_where(cond.get("where", []), f"{path}.where", errors)
    _validate_follow_up(cond, path, errors)


def _where(events: QuerySet, where: list[dict[str, Any]]) -> QuerySet:
    for item in where:
        events = events.filter(
            predicates.predicate_q("properties", item["property"], item["op"], item.get("value"))
        )
    return events


def _follow_up(events: QuerySet, cond: dict[str, Any], ctx: CompileContext) -> QuerySet:
    """Keep the events that were (not) followed by the follow-up event: a correlated
    (NOT) EXISTS on the same contact's events, keyed by JSON property equality."""
    negated = "not_followed_by" in cond
    follow = cond["not_followed_by" if negated else "followed_by"]
    later = Event.objects.filter(
        contact=OuterRef("contact"), name=follow["event"], occurred_at__gte=OuterRef("occurred_at")
    )
    span = None
    if "within_hours" in follow:
        span = dt.timedelta(hours=follow["within_hours"])
    elif "within_days" in follow:
        span = dt.timedelta(days=follow["within_days"])
    if span is not None:
        later = later.filter(occurred_at__lt=OuterRef("occurred_at") + span)
    for name, expected in (follow.get("match") or {}).items():
        if isinstance(expected, str) and expected.startswith(TRIGGER):
            source = expected[len(TRIGGER) :]
            # Only events carrying the key can be judged (a cart event without a cart id is
            # neither ordered nor abandoned); JSON equality, type included (5 is not "5").
            events = events.filter(properties__has_key=source)
            later = later.filter(
                Exact(
                    KeyTransform(name, "properties"), KeyTransform(source, OuterRef("properties"))
                )
            )
        else:
            # `__exact` last: a property called "contains" is a key, not a lookup.
            later = later.filter(**{f"properties__{name}__exact": expected})
    later = _where(later, follow.get("where", []))
    if not negated:
        return events.filter(Exists(later))
    if span is not None:
        # Still inside its window, the follow-up may yet come: not "not followed" yet.
        events = events.filter(occurred_at__lte=ctx.now - span)
    return events.filter(~Exists(later))


def _compile(cond: dict[str, Any], ctx: CompileContext) -> Q:
    events = Event.objects.filter(contact=OuterRef("pk"), name=cond["event"])
    events = _where(events.filter(window_q(cond, ctx, "occurred_at")), cond.get("where", []))
    if any(k in cond for k in FOLLOW_UPS):
        events = _follow_up(events, cond, ctx)
    return count_q(events, cond)


EVENT_CONDITION = ConditionType(
    "event",
    frozenset({"event", "count", "where", *WINDOW_KEYS, *FOLLOW_UPS}),
    _validate,
    _compile,
    "event history",
)


def register() -> None:
    register_condition(EVENT_CONDITION)
    segment_journeys.register()
