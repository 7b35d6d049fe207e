"""Condition types: the built-in ones (audiences/conditions.py) and those apps above
audiences add at start-up (journeys registers `event`), so nothing here imports upward."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Q


class Errors:
    """Field-level errors keyed by the JSON path inside the definition (`all[0].op`)."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        # ("" is the definition itself; a condition at the top has paths like ".op")
        self.by_path.setdefault(path.lstrip("."), []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_path)


@dataclass
class CompileContext:
    """What compiling needs besides the definition: the time relative windows count from,
    and a way to compile another segment (by slug) for `{"segment": …}`."""

    now: dt.datetime
    segment_q: Callable[[str], Q]
    stack: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConditionType:
    """A condition is a JSON object recognised by its `key` (`{"event": …}`)."""

    key: str
    keys: frozenset[str]  # every key the condition may have
    validate: Callable[[dict[str, Any], str, Errors], None]
    compile: Callable[[dict[str, Any], CompileContext], Q]
    description: str = ""


CONDITIONS: dict[str, ConditionType] = {}


def register_condition(condition: ConditionType) -> None:
    """Idempotent (AppConfig.ready may run twice in tests)."""
    CONDITIONS[condition.key] = condition
