"""Time windows and counts shared by the condition types over history (events, messages,
survey answers, enrollments): `within_days` or `since` / `until`, and `count`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Exists, IntegerField, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from . import predicates
from .registry import CompileContext, Errors

COUNT_OPS = ("eq", "gte", "gt", "lte", "lt")
MAX_COUNT = 10_000
MAX_DAYS = 3650
WINDOW_KEYS = frozenset({"within_days", "since", "until"})
TIME_HELP = "An ISO-8601 date or time, e.g. 2026-11-23T10:00:00Z."


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO-8601 time from a definition (UTC when it names no zone); None if it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def is_whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def validate_window(cond: dict[str, Any], path: str, errors: Errors) -> None:
    days = cond.get("within_days")
    if days is not None and not is_whole(days, 1, MAX_DAYS):
        errors.add(f"{path}.within_days", f"A whole number of days, 1-{MAX_DAYS}.")
    for key in ("since", "until"):
        if key in cond and parse_time(cond[key]) is None:
            errors.add(f"{path}.{key}", TIME_HELP)


def window_q(cond: dict[str, Any], ctx: CompileContext, field: str) -> Q:
    """`field` inside the condition's window (everything when it names none)."""
    q = Q()
    if cond.get("within_days"):
        q &= Q(**{f"{field}__gte": ctx.now - dt.timedelta(days=cond["within_days"])})
    if "since" in cond:
        q &= Q(**{f"{field}__gte": parse_time(cond["since"])})
    if "until" in cond:
        q &= Q(**{f"{field}__lt": parse_time(cond["until"])})
    return q


def validate_count(cond: dict[str, Any], path: str, errors: Errors) -> None:
    count = cond.get("count", {"gte": 1})
    if not (
        isinstance(count, dict)
        and len(count) == 1
        and next(iter(count)) in COUNT_OPS
        and is_whole(next(iter(count.values())), 0, MAX_COUNT)
    ):
        errors.add(
            f"{path}.count",
            f'One of {", ".join(COUNT_OPS)} with a whole number 0-{MAX_COUNT}, e.g. {{"gte": 2}}.',
        )


def count_q(rows: QuerySet, cond: dict[str, Any], group_by: str = "contact") -> Q:
    """The condition's `count` over `rows` (correlated with the outer contact).

    "Did" (gte 1) and "did not" (eq 0) are EXISTS / NOT EXISTS (semi- and anti-joins over
    the index); other counts compare a correlated COUNT, as one would write by hand. (An
    EXISTS over the n-th row, OFFSET n-1, reads fewer rows but PostgreSQL estimates it so
    high that it turns JIT on: twice slower in bench/.)"""
    op, n = next(iter(cond.get("count", {"gte": 1}).items()))
    if (op, n) in (("gte", 1), ("gt", 0)):
        return Q(Exists(rows))
    if (op, n) in (("eq", 0), ("lt", 1), ("lte", 0)):
        return ~Q(Exists(rows))
    counted = Coalesce(
        Subquery(
            rows.order_by().values(group_by).annotate(n=Count("pk")).values("n"),
            output_field=IntegerField(),
        ),
        Value(0),
    )
    return Q(predicates.COUNT_LOOKUPS[op](counted, Value(n)))
