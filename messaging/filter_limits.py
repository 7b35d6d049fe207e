"""The output size limit applied inside filter chains (used by messaging.template_limits).

python-liquid checks the output limit only when text is written and the size of assigned
variables only after a value was built, so `"a" | replace: "a", "aaaaaaaaaa"` repeated nine
times builds a 1 GB string before any limit looks at it. Here every filter call is bounded
by TEMPLATE_MAX_OUTPUT_BYTES:

- before the call, for the python-liquid 2.1 built-ins whose result can be more than a
  constant factor larger than their input (or add an argument to it): the size of the
  result is projected from the arguments and the call is refused when it would be over;
- after the call, for every filter: a string, array or mapping longer than the limit (or an
  integer with more digits) is refused, so no chain grows past it step by step.

Built-ins checked (liquid/builtin/filters/): growing by more than a constant factor or by an
argument, projected before the call: replace, replace_first, replace_last, append, prepend,
join, concat, split, truncate, truncatewords (their `end`), date (strftime field widths, e.g.
`%100000Y`). Growing by at most a small constant factor (escape, escape_once, newline_to_br,
url_encode, base64_*encode, upcase, capitalize, downcase, strip_html, url_decode), or never
growing (remove*, slice, strip*, first, last, map, where, reject, find*, has, sort*, uniq,
compact, reverse, sum, size, default, and the math filters, whose numbers grow by at most the
digits of their argument): the check after the call is enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from liquid.exceptions import OutputStreamLimitError
from liquid.filter import flatten
from liquid.undefined import Undefined


class FilterResultLimitError(OutputStreamLimitError):
    """A filter's result would be longer than TEMPLATE_MAX_OUTPUT_BYTES."""


def _text(value: object) -> str:
    # What python-liquid's string filters make of their input and arguments.
    return value if isinstance(value, str) else str(value)


def _items(value: object) -> Iterable[object]:
    # What python-liquid's sequence filters make of their input (`sequence_filter`).
    if isinstance(value, (list, tuple)):
        return flatten(value)
    if isinstance(value, (dict, str)) or not isinstance(value, Iterable):
        return [value]
    return value  # type: ignore[return-value]


def _replace(val: object, seq: object = "", sub: object = "", *_: object, **__: object) -> int:
    text, old, new = _text(val), _text(seq), _text(sub)
    return len(text) + text.count(old) * max(0, len(new) - len(old))


def _replace_one(val: object, seq: object = "", sub: object = "", *_: object, **__: object) -> int:
    return len(_text(val)) + len(_text(sub))


def _append(val: object, arg: object = "", *_: object, **__: object) -> int:
    return len(_text(val)) + len(_text(arg))


def _join(val: object, separator: object = " ", *_: object, **__: object) -> int:
    items = list(_items(val))
    total = sum(len(_text(item)) for item in items)
    return total + len(_text(separator)) * max(0, len(items) - 1)


def _concat(val: object, second: object = (), *_: object, **__: object) -> int:
    first = 0 if isinstance(val, Undefined) else len(list(_items(val)))
    return first + (len(second) if isinstance(second, (list, tuple)) else 0)


def _split(val: object, sep: object = None, *_: object, **__: object) -> int:
    text = _text(val)
    if sep is None or isinstance(sep, Undefined) or _text(sep) == "":
        return len(text)
    return text.count(_text(sep)) + 1


def _truncate(val: object, num: object = 0, end: object = "...", *_: object, **__: object) -> int:
    return len(_text(val)) + len(_text(end))


# A strftime directive: flags, an optional field width, an optional modifier, the letter.
_DIRECTIVE = re.compile(r"%[-_0^#]*(\d*)[EO]?(.)", re.DOTALL)
# No directive without a width writes more than this (`%c` is about 24 characters).
_DIRECTIVE_MAX = 64


def _date(val: object, fmt: object = "", *_: object, **__: object) -> int:
    text = _text(fmt)
    widths = (int(width or 0) for width, _letter in _DIRECTIVE.findall(text))
    return len(text) + sum(max(width, _DIRECTIVE_MAX) for width in widths)


# Filter name → the projected length of its result (characters, or items for arrays).
_PROJECTIONS: dict[str, Callable[..., int]] = {
    "replace": _replace,
    "replace_first": _replace_one,
    "replace_last": _replace_one,
    "append": _append,
    "prepend": _append,
    "join": _join,
    "concat": _concat,
    "split": _split,
    "truncate": _truncate,
    "truncatewords": _truncate,
    "date": _date,
}

# log2(10): an integer of n decimal digits has about n * 3.33 bits.
_BITS_PER_DIGIT = 3.33


def _size(value: object) -> int:
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value.bit_length() / _BITS_PER_DIGIT)
    return 0


def _refuse(token: Any) -> FilterResultLimitError:
    return FilterResultLimitError("output size limit reached in a filter", token=token)


def bounded(func: Callable[..., Any], name: str, limit: int, token: Any) -> Callable[..., Any]:
    """`func` (the filter `name`) refusing to produce a result longer than `limit`."""
    project = _PROJECTIONS.get(name)

    def call(left: object, *args: Any, **kwargs: Any) -> Any:
        if project is not None:
            try:
                projected = project(left, *args, **kwargs)
            except Exception:  # bad arguments: the filter itself says what is wrong
                projected = 0
            if projected > limit:
                raise _refuse(token)
        result = func(left, *args, **kwargs)
        if _size(result) > limit:
            raise _refuse(token)
        return result

    # Not functools.wraps: a copied `filter_async` would call the filter unbounded.
    return call
