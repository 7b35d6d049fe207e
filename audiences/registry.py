"""Condition types: the built-in ones (audiences/conditions.py) and those apps above
audiences add at start-up (journeys registers `event`), so nothing here imports upward.

Message scopes (`{"engagement": "opened", "journey": "welcome"}`) are registered the same
way: audiences registers `template`, journeys `journey`, campaigns `broadcast`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Q, QuerySet


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
    # Fields other apps add after registration (the engagement condition's message scopes).
    extra_keys: Callable[[], frozenset[str]] | None = None

    def fields(self) -> frozenset[str]:
        return self.keys | self.extra_keys() if self.extra_keys else self.keys


CONDITIONS: dict[str, ConditionType] = {}


def register_condition(condition: ConditionType) -> None:
    """Idempotent (AppConfig.ready may run twice in tests)."""
    CONDITIONS[condition.key] = condition


def condition_type(node: dict[str, Any]) -> list[str]:
    """The condition types a JSON object names (valid when exactly one). A key another
    named type lists as one of its fields is that type's field, not a type of its own:
    `{"engagement": "opened", "journey": "j"}` is an engagement condition."""
    named = [key for key in CONDITIONS if key in node]
    if len(named) < 2:
        return named
    return [k for k in named if not any(k in CONDITIONS[o].fields() for o in named if o != k)]


@dataclass(frozen=True)
class MessageScope:
    """Which outbound messages an engagement condition looks at: `{"<key>": value}`.

    `messages(value)` returns the ids of those messages as a one-column queryset (e.g.
    `JourneyMessage.objects.filter(journey__slug=value).values("message_id")`) or a Q over
    `messaging.Message`; it must not depend on the contact (the condition correlates).
    `validate(value, path, errors)` adds field-level errors (e.g. an unknown slug)."""

    key: str
    validate: Callable[[Any, str, Errors], None]
    messages: Callable[[Any], QuerySet | Q]
    description: str = ""


MESSAGE_SCOPES: dict[str, MessageScope] = {}


def register_message_scope(scope: MessageScope) -> None:
    """Idempotent, like register_condition. The engagement condition accepts `scope.key`
    as a field from then on."""
    MESSAGE_SCOPES[scope.key] = scope
