"""Comparisons on one key of a JSON column (contact attributes, event properties): the
part of a condition shared by `{"attribute": …}` and an event's `where`.

Numeric and date comparisons read the JSON value through a guarded cast: a value that is
not a number (or not an ISO date) compares as NULL, so it never matches and never raises.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.db.models import BooleanField, Case, CharField, F, FloatField, Func, Q, Value, When
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
)

from .registry import Errors

EQUALITY_OPS = ("eq", "neq")
ORDER_OPS = ("gt", "gte", "lt", "lte")
PRESENCE_OPS = ("exists", "not_exists")
VALUE_OPS = (*EQUALITY_OPS, "contains", "in", *ORDER_OPS)
ALL_OPS = (*VALUE_OPS, *PRESENCE_OPS)
ORDER_LOOKUPS = {
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}
COUNT_LOOKUPS = {**ORDER_LOOKUPS, "eq": Exact}
MAX_IN_VALUES = 1000
MAX_TEXT = 500
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Keys Django would read as a path ("a__b") or an array index ("0") are refused.
KEY_RE = re.compile(r"^(?!\d+$)(?!.*__)[^\x00]{1,100}$")


def negate(q: Q) -> Q:
    """NOT that stays true where the inner condition is NULL (a missing key): SQL's
    `NOT (NULL)` would drop the row."""
    return Q(Case(When(q, then=Value(False)), default=Value(True), output_field=BooleanField()))


MAX_NUMBER = 1e15  # beyond it a float loses integers, and a huge int would not convert


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) < MAX_NUMBER  # False for NaN and infinities too
    )


def is_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    return isinstance(value, bool) or is_number(value)


def parse_date(value: Any) -> dt.date | None:
    if isinstance(value, str) and DATE_RE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def validate_key(value: Any, path: str, errors: Errors) -> None:
    if not isinstance(value, str) or not KEY_RE.match(value):
        errors.add(
            path, "A key name of 1-100 characters (not only digits, without “__”) is required."
        )


def validate_op_value(
    cond: dict[str, Any], path: str, errors: Errors, *, ops: tuple[str, ...] = ALL_OPS
) -> None:
    """`op` and `value` of a comparison, checked together."""
    op = cond.get("op")
    if op not in ops:
        errors.add(f"{path}.op", f"Choose one of: {', '.join(ops)}.")
        return
    has_value = "value" in cond
    value = cond.get("value")
    if op in PRESENCE_OPS:
        if has_value:
            errors.add(f"{path}.value", f"“{op}” takes no value.")
    elif not has_value:
        errors.add(f"{path}.value", "This field is required.")
    elif op in EQUALITY_OPS and not is_scalar(value):
        errors.add(f"{path}.value", "A string, number or boolean (at most 500 characters).")
    elif op == "contains" and not (isinstance(value, str) and 0 < len(value) <= MAX_TEXT):
        errors.add(f"{path}.value", "A non-empty string (at most 500 characters).")
    elif op == "in" and not (
        isinstance(value, list)
        and 0 < len(value) <= MAX_IN_VALUES
        and all(is_scalar(v) for v in value)
    ):
        errors.add(f"{path}.value", f"A list of 1-{MAX_IN_VALUES} strings, numbers or booleans.")
    elif op in ORDER_OPS and not (is_number(value) or parse_date(value)):
        errors.add(f"{path}.value", "A number, or a date as YYYY-MM-DD.")


class JsonNumber(Func):
    """The number at `key` of a JSON column, or NULL if it is not a number (a numeric string
    such as "12.5" counts)."""

    output_field = FloatField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_postgresql(self, compiler, connection, **_: Any):
        col, params = compiler.compile(self.source_expressions[0])
        v = f"({col} -> %s::text)"
        t = f"({col} ->> %s::text)"
        sql = (
            f"(CASE WHEN jsonb_typeof({v}) = 'number' THEN ({t})::double precision "
            f"WHEN jsonb_typeof({v}) = 'string' AND {t} ~ '^ *-?[0-9]+(\\.[0-9]+)? *$' "
            f"THEN ({t})::double precision END)"
        )
        k = [self.key]
        return sql, (*params, *k, *params, *k, *params, *k, *params, *k, *params, *k)

    def as_sqlite(self, compiler, connection, **_: Any):
        col, params = compiler.compile(self.source_expressions[0])
        path = [f"$.{json.dumps(self.key)}"]
        v = f"json_extract({col}, %s)"
        sql = (
            f"(CASE WHEN json_type({col}, %s) IN ('integer', 'real') THEN {v} "
            f"WHEN json_type({col}, %s) = 'text' AND trim({v}) GLOB '*[0-9]*' "
            f"AND NOT trim({v}) GLOB '*[^0-9.-]*' THEN CAST(trim({v}) AS REAL) END)"
        )
        p = (*params, *path)
        return sql, (*p, *p, *p, *p, *p, *p)


class JsonDate(Func):
    """The date (YYYY-MM-DD text) an ISO date or datetime string at `key` starts with, or
    NULL. Compared as text, which orders like dates."""

    output_field = CharField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_postgresql(self, compiler, connection, **_: Any):
        col, params = compiler.compile(self.source_expressions[0])
        t = f"({col} ->> %s::text)"
        sql = (
            f"(CASE WHEN jsonb_typeof({col} -> %s::text) = 'string' "
            f"AND {t} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' THEN left({t}, 10) END)"
        )
        k = [self.key]
        return sql, (*params, *k, *params, *k, *params, *k)

    def as_sqlite(self, compiler, connection, **_: Any):
        col, params = compiler.compile(self.source_expressions[0])
        path = [f"$.{json.dumps(self.key)}"]
        v = f"json_extract({col}, %s)"
        sql = (
            f"(CASE WHEN json_type({col}, %s) = 'text' AND {v} GLOB "
            f"'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN substr({v}, 1, 10) END)"
        )
        p = (*params, *path)
        return sql, (*p, *p, *p)


def predicate_q(column: str, key: str, op: str, value: Any = None) -> Q:
    """The comparison `column[key] <op> value` as a Q over the model holding `column`."""
    lookup = f"{column}__{key}"
    if op == "eq":
        return Q(**{lookup: value})
    if op == "neq":
        return negate(Q(**{lookup: value}))
    if op == "contains":
        return Q(**{f"{lookup}__icontains": value})
    if op == "in":
        return Q(**{f"{lookup}__in": value})
    if op == "exists":
        return Q(**{f"{column}__has_key": key})
    if op == "not_exists":
        return ~Q(**{f"{column}__has_key": key})
    if op in ORDER_LOOKUPS:
        if is_number(value):
            return Q(ORDER_LOOKUPS[op](JsonNumber(column, key), Value(float(value))))
        return Q(ORDER_LOOKUPS[op](JsonDate(column, key), Value(value)))
    raise ValueError(f"unknown op {op!r}")  # the validator refused it already
