"""Input no endpoint accepts: NUL bytes and lone surrogates (PostgreSQL text and JSONB cannot
hold them, so they would fail deep inside a query as a 500), numbers that are not finite
(Python's JSON decoder makes `1e999` an infinite float, which JSONB cannot hold either), and
JSON nested deeper than API_MAX_JSON_DEPTH. One rule, applied by the API's JSON parser
(bodies) and by `messaging.middleware.UnsafeTextMiddleware` (paths, query strings, headers)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be accepted, or None. Valid surrogate pairs never reach here: the
    JSON decoder joins them into one character, so any surrogate left is a lone one."""
    if "\x00" in value:
        return "NUL bytes (\\u0000) are not allowed."
    if not value.isascii():
        found = _SURROGATE.search(value)
        if found:
            return f"Lone surrogate characters (U+{ord(found.group()):04X}) are not allowed."
    return None


NOT_FINITE = "Numbers must be finite (1e999, Infinity and NaN are refused)."


class JsonInputError(ValueError):
    """A decoded JSON value breaks a rule; `path` is the field path (a list of keys)."""

    def __init__(self, path: list[str], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def check_json(value: Any, *, max_depth: int) -> None:
    """Raise JsonInputError for the first NUL/lone surrogate (in a key or a value), number
    that is not finite, or nesting deeper than `max_depth`. A bad key is reported at the
    object that holds it."""
    # An explicit stack, not recursion: the value may be nested as deep as the decoder allowed.
    stack: list[tuple[Any, list[str], int]] = [(value, [], 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise JsonInputError(path, problem)
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise JsonInputError(path, NOT_FINITE)
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise JsonInputError(
                path, f"JSON is nested more than {max_depth} levels deep (API_MAX_JSON_DEPTH)."
            )
        for key, child in _children(item):
            if isinstance(item, dict):
                problem = text_problem(key)
                if problem:
                    raise JsonInputError(path, f"A key in this object is refused: {problem}")
            stack.append((child, [*path, key], depth + 1))


def _children(item: dict | list) -> Iterator[tuple[str, Any]]:
    if isinstance(item, dict):
        # Reversed so the stack visits fields in document order (first problem first).
        return reversed(list(item.items()))
    return reversed([(str(index), child) for index, child in enumerate(item)])


def validate_safe_json(value: Any) -> None:
    """Model-field validator for JSON that staff edit in the admin: the API's rules (no NUL,
    no lone surrogates, finite numbers, bounded nesting) for form input too, so a bad value is
    a form error instead of a database error."""
    from django.conf import settings
    from django.core.exceptions import ValidationError

    try:
        check_json(value, max_depth=settings.API_MAX_JSON_DEPTH)
    except JsonInputError as exc:
        where = ".".join(exc.path)
        raise ValidationError(f"{where}: {exc.message}" if where else exc.message) from exc
