"""Segment definitions: a tree of `all` / `any` / `not` groups over conditions
(docs/SEGMENTS.md). `definition_validate` gives field-level errors, including cycles
between segments; `definition_compile` turns a definition into one Q over contacts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from django.db.models import Exists, OuterRef, Q

from . import (
    conditions,  # noqa: F401  (registers the built-in condition types)
    engagement,  # noqa: F401  (registers `engagement` and its `template` scope)
    predicates,
)
from .registry import CONDITIONS, CompileContext, Errors, condition_type

MAX_DEPTH = 6  # nested groups
MAX_CONDITIONS = 100
GROUPS = ("all", "any", "not")
# Conditions SQL can always compile (Q(pk__in=[]) would make the whole query "empty", which
# an INSERT ... SELECT cannot run).
EVERYONE = Q(pk__isnull=False)
NOBODY = Q(pk__isnull=True)


class DefinitionError(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _walk(node: Any, path: str, depth: int, errors: Errors, counter: list[int]) -> None:
    where = path
    if not isinstance(node, dict):
        errors.add(where, "An object: a group (all / any / not) or a condition.")
        return
    groups = [k for k in GROUPS if k in node]
    if groups:
        if len(node) != 1:
            errors.add(where, "A group has exactly one key: all, any or not.")
            return
        key = groups[0]
        if depth >= MAX_DEPTH:
            errors.add(where, f"Groups nest at most {MAX_DEPTH} deep.")
            return
        child_path = f"{path}.{key}" if path else key
        children = node[key]
        if key == "not":
            _walk(children, child_path, depth + 1, errors, counter)
            return
        if not isinstance(children, list):
            errors.add(child_path, "A list of conditions or groups.")
            return
        if key == "any" and not children:
            errors.add(child_path, "At least one condition.")
        for i, child in enumerate(children):
            _walk(child, f"{child_path}[{i}]", depth + 1, errors, counter)
        return
    types = condition_type(node)
    if len(types) != 1:
        known = ", ".join([*GROUPS, *CONDITIONS])
        errors.add(where, f"Unknown condition: use exactly one of {known}.")
        return
    counter[0] += 1
    if counter[0] == MAX_CONDITIONS + 1:
        errors.add(where, f"At most {MAX_CONDITIONS} conditions in a segment.")
    condition = CONDITIONS[types[0]]
    for key in sorted(set(node) - condition.fields()):
        errors.add(f"{path}.{key}" if path else key, "Unknown field.")
    condition.validate(node, path, errors)


def _iter_conditions(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    for key in GROUPS:
        if key in node:
            child_path = f"{path}.{key}" if path else key
            if key == "not":
                yield from _iter_conditions(node[key], child_path)
            elif isinstance(node[key], list):
                for i, child in enumerate(node[key]):
                    yield from _iter_conditions(child, f"{child_path}[{i}]")
            return
    yield path, node


def definition_references(definition: Any) -> list[tuple[str, str]]:
    """(path, slug) of every `{"segment": slug}` condition."""
    return [
        (path, cond["segment"])
        for path, cond in _iter_conditions(definition)
        if isinstance(cond.get("segment"), str)
    ]


def _cycle(start: str, graph: Mapping[str, list[str]]) -> list[str] | None:
    """A path from `start` back to itself through `graph` (slug -> referenced slugs)."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        slug, trail = stack.pop()
        for ref in graph.get(slug, []):
            if ref == start:
                return [*trail, ref]
            if ref not in seen:
                seen.add(ref)
                stack.append((ref, [*trail, ref]))
    return None


def definition_validate(
    definition: Any,
    *,
    slug: str | None,
    others: Mapping[str, Any],
) -> None:
    """Raise DefinitionError ({path: [messages]}) unless `definition` is valid for the segment
    `slug` (None: a new one without a slug yet). `others` maps every other segment's slug to
    its definition (for references and cycles)."""
    errors = Errors()
    _walk(definition, "", 0, errors, [0])
    graph = {s: [ref for _, ref in definition_references(d)] for s, d in others.items()}
    for path, ref in definition_references(definition):
        where = f"{path}.segment"
        if ref == slug:
            errors.add(where, "A segment cannot include itself.")
        elif ref not in others:
            errors.add(where, f"No segment with the slug “{ref}”.")
        elif slug is not None:
            graph[slug] = [r for _, r in definition_references(definition)]
            cycle = _cycle(slug, graph)
            if cycle:
                errors.add(where, f"Segments would form a cycle: {' → '.join(cycle)}.")
    if errors:
        raise DefinitionError(errors.by_path)


def _compile(node: dict[str, Any], ctx: CompileContext) -> Q:
    # Explicit true/false, never an empty Q(): `Q() | x` is x (not everyone), and an empty
    # Q() cannot sit inside `not` (When()).
    if "all" in node:
        q = EVERYONE
        for child in node["all"]:
            q &= _compile(child, ctx)
        return q
    if "any" in node:
        q = NOBODY
        for child in node["any"]:
            q |= _compile(child, ctx)
        return q
    if "not" in node:
        return predicates.negate(_compile(node["not"], ctx))
    (key,) = condition_type(node)
    return CONDITIONS[key].compile(node, ctx)


def definition_compile(definition: dict[str, Any], *, now: dt.datetime, slug: str = "") -> Q:
    """One Q over contacts for a validated definition; another segment is compiled inline
    (dynamic) or read from its membership table (static)."""
    from .models import Segment, SegmentMembership

    def segment_q(ref: str) -> Q:
        if ref in ctx.stack:  # validated against, but a concurrent edit could make one
            raise DefinitionError({"": [f"Segments form a cycle through “{ref}”."]})
        other = Segment.objects.filter(slug=ref).only("pk", "kind", "definition").first()
        if other is None:
            return NOBODY  # deleted meanwhile: nobody matches it
        if other.kind == Segment.Kind.STATIC:
            members = SegmentMembership.objects.filter(segment=other, contact=OuterRef("pk"))
            return Q(Exists(members))
        ctx.stack.append(ref)
        try:
            return _compile(other.definition, ctx)
        finally:
            ctx.stack.pop()

    ctx = CompileContext(now=now, segment_q=segment_q, stack=[slug] if slug else [])
    return _compile(definition, ctx)


def empty_definition_for(kind: str) -> dict[str, Any]:
    """A new segment's definition: static segments have none; a dynamic one starts as
    "everyone" (`{"all": []}`)."""
    return {} if kind == "static" else {"all": []}
