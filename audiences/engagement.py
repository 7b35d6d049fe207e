"""The segment condition on message engagement,
`{"engagement": "opened", "journey": "welcome", "within_days": 30}`.

Which messages count is a *scope* (`template`, `journey`, `broadcast`, …): audiences
registers `template` here; apps above audiences register theirs with
`registry.register_message_scope` at start-up (journeys: `journey`; campaigns: `broadcast`),
so audiences never imports them. Without a scope every outbound message counts."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from channels_app.channels import Channel
from messaging.models import Direction, Message, Template, Touchpoint, TouchpointKind

from .registry import (
    MESSAGE_SCOPES,
    CompileContext,
    ConditionType,
    Errors,
    MessageScope,
    register_condition,
    register_message_scope,
)
from .windows import WINDOW_KEYS, count_q, validate_count, validate_window, window_q

# received = the provider accepted it (sent, delivered or read): queued, held, skipped,
# failed, undelivered and unknown-outcome messages were never received.
RECEIVED = ("sent", "delivered", "read")
DELIVERED = ("delivered", "read")
ENGAGEMENTS = ("received", "delivered", "opened", "clicked", "replied")
MAX_SLUG = 100


def scope_messages_q(key: str, value: Any) -> Q:
    """The registered scope's messages as a Q over Message."""
    found = MESSAGE_SCOPES[key].messages(value)
    return found if isinstance(found, Q) else Q(pk__in=found)


def validate_slug(value: Any, path: str, errors: Errors, *, exists: QuerySet, noun: str) -> bool:
    """A slug that names at least one row of `exists` filtered by slug (errors otherwise)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SLUG:
        errors.add(path, f"A {noun} slug (1-{MAX_SLUG} characters).")
        return False
    if not exists.filter(slug=value).exists():
        errors.add(path, f"No {noun} with the slug “{value}”.")
        return False
    return True


def _validate(cond: dict[str, Any], path: str, errors: Errors) -> None:
    if cond.get("engagement") not in ENGAGEMENTS:
        errors.add(f"{path}.engagement", f"Choose one of: {', '.join(ENGAGEMENTS)}.")
    scopes = [key for key in MESSAGE_SCOPES if key in cond]
    for key in scopes[1:]:
        errors.add(f"{path}.{key}", f"At most one of: {', '.join(MESSAGE_SCOPES)}.")
    for key in scopes[:1]:
        MESSAGE_SCOPES[key].validate(cond[key], f"{path}.{key}", errors)
    if "channel" in cond and cond["channel"] not in Channel.values:
        errors.add(f"{path}.channel", f"Choose one of: {', '.join(Channel.values)}.")
    validate_window(cond, path, errors)
    validate_count(cond, path, errors)


def _compile(cond: dict[str, Any], ctx: CompileContext) -> Q:
    messages = Message.objects.filter(contact=OuterRef("pk"), direction=Direction.OUTBOUND)
    if "channel" in cond:
        messages = messages.filter(channel=cond["channel"])
    for key in MESSAGE_SCOPES:
        if key in cond:
            messages = messages.filter(scope_messages_q(key, cond[key]))
    kind = cond["engagement"]
    if kind in ("received", "delivered"):
        # A status callback can move a message from sending straight to delivered, so "when
        # it was sent" is the first of the three stamps.
        messages = messages.filter(status__in=RECEIVED if kind == "received" else DELIVERED)
        if WINDOW_KEYS & set(cond):
            messages = messages.annotate(
                _sent=Coalesce("sent_at", "delivered_at", "read_at")
            ).filter(window_q(cond, ctx, "_sent"))
    elif kind in ("opened", "clicked"):
        touches = Touchpoint.objects.filter(
            message=OuterRef("pk"),
            kind=TouchpointKind.OPENED if kind == "opened" else TouchpointKind.CLICKED,
        ).filter(window_q(cond, ctx, "occurred_at"))
        messages = messages.filter(Exists(touches))
    else:  # replied: an inbound message answering it (as journey statistics count replies)
        replies = Message.objects.filter(
            in_reply_to=OuterRef("pk"), direction=Direction.INBOUND
        ).filter(window_q(cond, ctx, "received_at"))
        messages = messages.filter(Exists(replies))
    return count_q(messages, cond)


def _validate_template(value: Any, path: str, errors: Errors) -> None:
    validate_slug(value, path, errors, exists=Template.objects.all(), noun="template")


def _template_messages(value: str) -> Q:
    # Every channel's template of that slug (one slug per message, several channels).
    return Q(template__in=Template.objects.filter(slug=value).values("pk"))


ENGAGEMENT_CONDITION = ConditionType(
    "engagement",
    frozenset({"engagement", "channel", "count", *WINDOW_KEYS}),
    _validate,
    _compile,
    "message engagement",
    extra_keys=lambda: frozenset(MESSAGE_SCOPES),
)
register_condition(ENGAGEMENT_CONDITION)
register_message_scope(
    MessageScope("template", _validate_template, _template_messages, "messages of a template")
)
