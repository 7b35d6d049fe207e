"""Keyed events: an awaited event must carry the trigger event's key (or fixed values).

A match is a JSON object from property name to expected value, e.g.
``{"cart_id": "trigger.cart_id", "status": "paid"}``: a string ``"trigger.<name>"`` means
"equal to the trigger event's property <name>", anything else is a fixed value (string,
number or boolean). Values compare as JSON, type included (``5`` is not ``"5"``).

It is used by wait-for-event steps (``config["match"]``), journey goals
(``Journey.goal_match``), exit conditions (``Journey.exit_match``) and keyed entry
(``Journey.entry_key``). Matching runs in SQL over the enrollment's trigger event properties
so waking, converting and exiting stay set-based (journeys.event_effects).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.db.models import Q

TRIGGER = "trigger."
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MISSING = object()


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(NAME.match(name)) and "__" not in name


def match_problems(match: Any, where: str) -> list[str]:
    """Why this match config is invalid; empty when it is fine."""
    if match in (None, {}):
        return []
    if not isinstance(match, dict):
        return [f'{where}: match must be an object like {{"cart_id": "trigger.cart_id"}}.']
    problems = []
    for name, expected in match.items():
        if not _name_ok(name):
            problems.append(f"{where}: “{name}” is not a property name (letters, digits, _).")
            continue
        if isinstance(expected, str) and expected.startswith(TRIGGER):
            if not _name_ok(expected[len(TRIGGER) :]):
                problems.append(f"{where}: “{expected}” does not name a trigger property.")
        elif expected is None or not isinstance(expected, str | int | float | bool):
            problems.append(
                f"{where}: “{name}” must be “trigger.<property>” or a string, number or boolean."
            )
    return problems


def entry_key_problems(key: Any) -> list[str]:
    if key in (None, ""):
        return []
    if not _name_ok(key):
        return [f"Entry key “{key}” is not a property name (letters, digits, _)."]
    return []


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def match_q(match: dict[str, Any] | None, properties: dict[str, Any], prefix: str = "") -> Q | None:
    """The condition on enrollments (through ``<prefix>trigger_event``) that `match` puts on
    an event with these properties; None when no enrollment can match (a fixed value differs
    or the event lacks a matched property). An empty match is ``Q()`` (everything)."""
    q = Q()
    for name, expected in (match or {}).items():
        actual = properties.get(name, MISSING) if isinstance(properties, dict) else MISSING
        if actual is MISSING or actual is None:
            return None
        if isinstance(expected, str) and expected.startswith(TRIGGER):
            if isinstance(actual, dict | list):
                return None  # keys are scalars
            field = f"{prefix}trigger_event__properties__{expected[len(TRIGGER) :]}"
            q &= Q(**{field: actual})
        elif not _same(actual, expected):
            return None
    return q


def event_matches(match: dict[str, Any] | None, event_props: Any, trigger_props: Any) -> bool:
    """The same test in Python (for an event already chosen by SQL, as a guard)."""
    event_props = event_props if isinstance(event_props, dict) else {}
    trigger_props = trigger_props if isinstance(trigger_props, dict) else {}
    for name, expected in (match or {}).items():
        actual = event_props.get(name)
        if actual is None:
            return False
        if isinstance(expected, str) and expected.startswith(TRIGGER):
            expected = trigger_props.get(expected[len(TRIGGER) :], MISSING)
        if not _same(actual, expected):
            return False
    return True


def matching_properties(match: dict[str, Any] | None, trigger_props: Any) -> dict[str, Any]:
    """Properties an event needs to satisfy `match` for this trigger (the dry run's replies)."""
    trigger_props = trigger_props if isinstance(trigger_props, dict) else {}
    found = {}
    for name, expected in (match or {}).items():
        if isinstance(expected, str) and expected.startswith(TRIGGER):
            expected = trigger_props.get(expected[len(TRIGGER) :])
        if expected is not None:
            found[name] = expected
    return found


def entry_key_value(key: str, properties: Any) -> str | None:
    """The stored key of an enrollment for a keyed entry policy; None when the event lacks
    the key (a keyed journey does not enroll it)."""
    value = properties.get(key) if isinstance(properties, dict) else None
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > 200:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text
