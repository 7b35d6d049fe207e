"""Branch conditions: a small, safe language over contact, trigger event and step outputs.

A condition is `{"field": "steps.nps.score", "op": "gte", "value": 9}`; a branch rule is
`{"when": [conditions…], "goto": "step-key"}` and matches when all its conditions hold.
"""

from __future__ import annotations

from typing import Any

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "missing")
_MISSING = object()


def resolve(path: str, scope: dict[str, Any]) -> Any:
    """Look up a dotted path (`contact.attributes.plan`, `event.total`, `steps.nps.score`)."""
    value: Any = scope
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if op == "missing":
        return actual is _MISSING or actual is None
    if actual is _MISSING or actual is None:
        return op == "ne" or op == "not_in"
    try:
        if op == "eq":
            return actual == expected
        if op == "ne":
            return actual != expected
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
        if op == "in":
            return actual in expected
        if op == "not_in":
            return actual not in expected
        if op == "contains":
            return expected in actual
    except TypeError:
        return False  # comparing a string with a number is simply false, not an error
    raise ValueError(f"unknown operator {op!r}")


def condition_holds(condition: dict[str, Any], scope: dict[str, Any]) -> bool:
    return _compare(condition["op"], resolve(condition["field"], scope), condition.get("value"))


def first_match(rules: list[dict[str, Any]], scope: dict[str, Any]) -> str | None:
    """The `goto` of the first rule whose conditions all hold."""
    for rule in rules:
        if all(condition_holds(c, scope) for c in rule.get("when", [])):
            return rule["goto"]
    return None


def filter_matches(expected: dict[str, Any], properties: dict[str, Any]) -> bool:
    """A journey's trigger filter: every listed property equals (or is one of) the value."""
    for path, want in (expected or {}).items():
        got = resolve(path, properties)
        if isinstance(want, list):
            if got not in want:
                return False
        elif got != want:
            return False
    return True
