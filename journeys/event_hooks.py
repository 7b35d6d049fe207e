"""What higher apps do with each applied event, without journeys importing them: a small
registry `insights` fills at start-up (attribution). `_apply_event` calls every hook with
(event, now) in its transaction; a hook returns a dict merged into the event's `result`
(e.g. {"conversion": {...}}), or None when the event meant nothing to it. `names` providers
say which event names a hook uses, so such an event is not reported as unmatched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Event

Hook = Callable[["Event", dt.datetime], dict[str, Any] | None]

_hooks: list[Hook] = []
_names: list[Callable[[], frozenset[str]]] = []


def register(fn: Hook, *, names: Callable[[], frozenset[str]] | None = None) -> None:
    """Add a hook (once: registering the same function again changes nothing)."""
    if fn not in _hooks:
        _hooks.append(fn)
    if names is not None and names not in _names:
        _names.append(names)


def unregister(fn: Hook) -> None:
    """Remove a hook (the benchmark measures ingest without it)."""
    if fn in _hooks:
        _hooks.remove(fn)


def run(event: Event, now: dt.datetime) -> dict[str, Any]:
    """Every hook's result for this event, merged (empty when none had anything to say)."""
    merged: dict[str, Any] = {}
    for hook in _hooks:
        found = hook(event, now)
        if found:
            merged.update(found)
    return merged


def names_in_use() -> frozenset[str]:
    """Event names some hook acts on (e.g. conversion events)."""
    found: frozenset[str] = frozenset()
    for names in _names:
        found |= names()
    return found
