"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by tests/e2e/test_fuzz.py): besides
what the schema allows, send what an attacker would — NUL bytes and lone surrogates in any
body key or value, numbers too large to be finite (1e999), bodies nested far past the limit,
NUL in path and query parameters.

Each injection is logged (FUZZ_HOSTILE_LOG) so the test can prove they were sent."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

NUL = ["\x00", "nul\x00in the middle"]
SURROGATES = ["\ud800", "lone \udfff surrogate"]
# Written as the number 1e999 by the JSON serializer below (Python reads it back as inf).
NOT_FINITE = "__fuzz_not_finite_number__"
DEEP = 200  # JSON levels; far over API_MAX_JSON_DEPTH, under the client's own recursion limit


def _log(kind: str) -> None:
    path = os.environ.get("FUZZ_HOSTILE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(kind + "\n")


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"n": value} if levels % 2 else [value]
    return value


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) for every value inside `value`, in document order."""
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                found.append((item, key))
                stack.append(child)
        elif isinstance(item, list):
            for index, child in enumerate(item):
                found.append((item, index))
                stack.append(child)
    return found


@st.composite
def _hostile_body(draw: st.DrawFn, body: Any) -> Any:
    kinds = ["nul", "surrogate", "nul_key", "surrogate_key", "deep", "not_finite"]
    kind = draw(st.sampled_from(kinds))
    text = draw(st.sampled_from(SURROGATES if "surrogate" in kind else NUL))
    body = copy.deepcopy(body)
    if not isinstance(body, dict | list):
        _log(f"body:{kind}")
        return {"deep": _deep(DEEP), "not_finite": NOT_FINITE}.get(kind, text)
    slots = _slots(body) or [(body, None)]
    objects = [(c, k) for c, k in _slots(body) if isinstance(c[k], dict)]
    if kind == "not_finite" and objects:
        # Free-form objects (attributes, properties) are where a number reaches JSONB.
        container, key = draw(st.sampled_from(objects))
        container[key] = {**container[key], "n": NOT_FINITE}
        _log(f"body:{kind}")
        return body
    container, key = draw(st.sampled_from(slots))
    if kind == "deep":
        new_value: Any = _deep(DEEP)
    elif kind == "not_finite":
        new_value = NOT_FINITE
    elif kind.endswith("_key"):
        new_value = {text: "value"}
    else:
        new_value = text
    if key is None:
        if isinstance(container, dict):
            container["hostile"] = new_value
        else:
            container.append(new_value)
    else:
        container[key] = new_value
    _log(f"body:{kind}")
    return body


@schemathesis.serializer("application/json")
def _json_with_numbers_too_large(context: Any, value: Any) -> bytes:
    """JSON as schemathesis writes it (bytes as given, None as null), except that the marker
    becomes 1e999: json.dumps cannot write a number that Python reads back as inf."""
    if isinstance(value, bytes):
        return value
    text = json.dumps(value, default=str)  # default: schemathesis' Binary values, as text
    return text.replace(json.dumps(NOT_FINITE), "1e999").encode()


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    return st.one_of(st.just(body), _hostile_body(body))


def _with_nul(values: dict[str, Any], where: str) -> st.SearchStrategy:
    if not values:
        return st.just(values)

    @st.composite
    def hostile(draw: st.DrawFn) -> dict[str, Any]:
        name = draw(st.sampled_from(sorted(values)))
        changed = dict(values)
        changed[name] = draw(st.sampled_from(NUL))
        _log(f"{where}:nul")
        return changed

    # Lone surrogates cannot travel in a URL (it is UTF-8 encoded); NUL can, as %00.
    return st.one_of(st.just(values), hostile())


@schemathesis.hook
def flatmap_query(context: Any, query: dict[str, Any]) -> st.SearchStrategy:
    return _with_nul(query or {}, "query")


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    return _with_nul(path_parameters or {}, "path")
