"""The segment condition on event history, `{"event": "order.completed", …}`: events live
in journeys, so journeys registers it with audiences at start-up (audiences never imports
journeys)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from audiences import predicates
from audiences.conditions import parse_time
from audiences.registry import CompileContext, ConditionType, Errors, register_condition

from .models import Event

COUNT_OPS = ("eq", "gte", "gt", "lte", "lt")
MAX_COUNT = 10_000
MAX_DAYS = 3650
MAX_WHERE = 20


def _validate(cond: dict[str, Any], path: str, errors: Errors) -> None:
    name = cond.get("event")
    if not isinstance(name, str) or not 0 < len(name) <= 120:
        errors.add(f"{path}.event", "An event name (1-120 characters).")
    count = cond.get("count", {"gte": 1})
    if not (
        isinstance(count, dict)
        and len(count) == 1
        and next(iter(count)) in COUNT_OPS
        and isinstance(next(iter(count.values())), int)
        and not isinstance(next(iter(count.values())), bool)
        and 0 <= next(iter(count.values())) <= MAX_COUNT
    ):
        errors.add(
            f"{path}.count",
            f'One of {", ".join(COUNT_OPS)} with a whole number 0-{MAX_COUNT}, e.g. {{"gte": 2}}.',
        )
    days = cond.get("within_days")
    if days is not None and not (
        isinstance(days, int) and not isinstance(days, bool) and 0 < days <= MAX_DAYS
    ):
        errors.add(f"{path}.within_days", f"A whole number of days, 1-{MAX_DAYS}.")
    for key in ("since", "until"):
        if key in cond and parse_time(cond[key]) is None:
            errors.add(f"{path}.{key}", "An ISO-8601 date or time, e.g. 2026-11-23T10:00:00Z.")
    where = cond.get("where", [])
    if not isinstance(where, list) or len(where) > MAX_WHERE:
        errors.add(f"{path}.where", f"A list of at most {MAX_WHERE} property conditions.")
        return
    for i, item in enumerate(where):
        item_path = f"{path}.where[{i}]"
        if not isinstance(item, dict):
            errors.add(item_path, 'An object, e.g. {"property": "total", "op": "gte", "value": 1}.')
            continue
        for key in sorted(set(item) - {"property", "op", "value"}):
            errors.add(f"{item_path}.{key}", "Unknown field.")
        predicates.validate_key(item.get("property"), f"{item_path}.property", errors)
        predicates.validate_op_value(item, item_path, errors)


def _compile(cond: dict[str, Any], ctx: CompileContext) -> Q:
    events = Event.objects.filter(contact=OuterRef("pk"), name=cond["event"])
    if cond.get("within_days"):
        events = events.filter(occurred_at__gte=ctx.now - dt.timedelta(days=cond["within_days"]))
    if "since" in cond:
        events = events.filter(occurred_at__gte=parse_time(cond["since"]))
    if "until" in cond:
        events = events.filter(occurred_at__lt=parse_time(cond["until"]))
    for item in cond.get("where", []):
        events = events.filter(
            predicates.predicate_q("properties", item["property"], item["op"], item.get("value"))
        )
    op, n = next(iter(cond.get("count", {"gte": 1}).items()))
    # "Did" and "did not" are EXISTS / NOT EXISTS (semi- and anti-joins on the
    # (contact, name, occurred_at) index); other counts compare a correlated COUNT, as one
    # would write by hand. (An EXISTS over the n-th row, OFFSET n-1, reads fewer rows but
    # PostgreSQL estimates it so high that it turns JIT on: twice slower in bench/.)
    if (op, n) in (("gte", 1), ("gt", 0)):
        return Q(Exists(events))
    if (op, n) in (("eq", 0), ("lt", 1), ("lte", 0)):
        return ~Q(Exists(events))
    counted = Coalesce(
        Subquery(
            events.order_by().values("contact").annotate(n=Count("pk")).values("n"),
            output_field=IntegerField(),
        ),
        Value(0),
    )
    return Q(predicates.COUNT_LOOKUPS[op](counted, Value(n)))


EVENT_CONDITION = ConditionType(
    "event",
    frozenset({"event", "count", "within_days", "since", "until", "where"}),
    _validate,
    _compile,
    "event history",
)


def register() -> None:
    register_condition(EVENT_CONDITION)
