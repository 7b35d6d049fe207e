"""The built-in condition types: contact fields, attributes, channel reachability, topic
subscription and membership of another segment. Each has a validator (field-level errors)
and a compiler (a Q over contacts)."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q

from channels_app.channels import Channel
from messaging.models import Consent, ConsentStatus, Topic
from messaging.selectors import topic_receives

from . import predicates
from .registry import CompileContext, ConditionType, Errors, register_condition
from .windows import parse_time

TEXT_FIELDS = (
    "external_id",
    "email",
    "phone",
    "whatsapp",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "preferred_channel",
    "created_via",
)
TIME_FIELDS = ("created_at", "updated_at")
BOOL_FIELDS = ("is_test",)
TEXT_OPS = ("eq", "neq", "contains", "in", "exists", "not_exists")


# --- {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"} ------------------------


def _validate_field(cond: dict[str, Any], path: str, errors: Errors) -> None:
    name = cond.get("field")
    if name in TEXT_FIELDS:
        predicates.validate_op_value(cond, path, errors, ops=TEXT_OPS)
        if cond.get("op") in ("eq", "neq") and not isinstance(cond.get("value", ""), str):
            errors.add(f"{path}.value", "A string.")
        if cond.get("op") == "in" and not all(isinstance(v, str) for v in cond.get("value", [])):
            errors.add(f"{path}.value", "A list of strings.")
    elif name in TIME_FIELDS:
        op = cond.get("op")
        if op not in predicates.ORDER_OPS:
            errors.add(f"{path}.op", f"Choose one of: {', '.join(predicates.ORDER_OPS)}.")
        if parse_time(cond.get("value")) is None:
            errors.add(f"{path}.value", "An ISO-8601 date or time, e.g. 2026-11-23T10:00:00Z.")
    elif name in BOOL_FIELDS:
        if cond.get("op") != "eq":
            errors.add(f"{path}.op", "Choose: eq.")
        if not isinstance(cond.get("value"), bool):
            errors.add(f"{path}.value", "true or false.")
    else:
        known = ", ".join((*TEXT_FIELDS, *TIME_FIELDS, *BOOL_FIELDS))
        errors.add(f"{path}.field", f"Choose one of: {known}.")


def _compile_field(cond: dict[str, Any], ctx: CompileContext) -> Q:
    name, op, value = cond["field"], cond["op"], cond.get("value")
    if name in TIME_FIELDS:
        return Q(**{f"{name}__{op}": parse_time(value)})
    if op == "eq":
        return Q(**{name: value})
    if op == "neq":
        return predicates.negate(Q(**{name: value}))
    if op == "contains":
        return Q(**{f"{name}__icontains": value})
    if op == "in":
        return Q(**{f"{name}__in": value})
    present = Q(**{f"{name}__isnull": False}) & ~Q(**{name: ""})
    return present if op == "exists" else predicates.negate(present)


# --- {"attribute": "plan", "op": "in", "value": ["pro", "team"]} -----------------------


def _validate_attribute(cond: dict[str, Any], path: str, errors: Errors) -> None:
    predicates.validate_key(cond.get("attribute"), f"{path}.attribute", errors)
    predicates.validate_op_value(cond, path, errors)


def _compile_attribute(cond: dict[str, Any], ctx: CompileContext) -> Q:
    return predicates.predicate_q("attributes", cond["attribute"], cond["op"], cond.get("value"))


# --- {"reachable": "sms", "category": "marketing"} -------------------------------------

CATEGORIES = ("marketing", "transactional")


def _validate_reachable(cond: dict[str, Any], path: str, errors: Errors) -> None:
    if cond.get("reachable") not in Channel.values:
        errors.add(f"{path}.reachable", f"Choose one of: {', '.join(Channel.values)}.")
    if cond.get("category", "marketing") not in CATEGORIES:
        errors.add(f"{path}.category", f"Choose one of: {', '.join(CATEGORIES)}.")


def _compile_reachable(cond: dict[str, Any], ctx: CompileContext) -> Q:
    """The same rules as messaging.policies.check_address and check_consent, in SQL."""
    channel = cond["reachable"]
    if channel == Channel.EMAIL:
        address = ~Q(email="") & Q(email_undeliverable=False)
    elif channel == Channel.SMS:
        address = ~Q(phone="") & Q(phone_invalid=False)
    else:  # WhatsApp: its own number, else the phone number
        address = Q(whatsapp_invalid=False) & (
            ~Q(whatsapp="") | (~Q(phone="") & Q(phone_invalid=False))
        )
    consents = Consent.objects.filter(contact=OuterRef("pk"), channel=channel)
    unsubscribed = Exists(consents.filter(status=ConsentStatus.UNSUBSCRIBED))
    if cond.get("category", "marketing") == "marketing" and channel != Channel.EMAIL:
        # Marketing SMS/WhatsApp needs an explicit subscription.
        return address & Q(Exists(consents.filter(status=ConsentStatus.SUBSCRIBED)))
    return address & ~Q(unsubscribed)


# --- {"topic": "newsletter", "status": "subscribed"} ---------------------------------------

TOPIC_STATUSES = ("subscribed", "unsubscribed")


def _validate_topic(cond: dict[str, Any], path: str, errors: Errors) -> None:
    slug = cond.get("topic")
    if not isinstance(slug, str) or not slug:
        errors.add(f"{path}.topic", "A topic slug is required.")
    elif len(slug) > 100 or not Topic.objects.filter(slug=slug).exists():
        errors.add(f"{path}.topic", f"There is no topic {slug[:100]!r}.")
    if cond.get("status", "subscribed") not in TOPIC_STATUSES:
        errors.add(f"{path}.status", f"Choose one of: {', '.join(TOPIC_STATUSES)}.")


def _compile_topic(cond: dict[str, Any], ctx: CompileContext) -> Q:
    """ "subscribed": would receive a send naming the topic (messaging.policies.check_topic:
    no `unsubscribed` row for an opt-out topic, a `subscribed` row for an opt-in one), one
    EXISTS over topicsub_one_per_topic; "unsubscribed": the others."""
    topic = Topic.objects.filter(slug=cond["topic"]).first()
    # (deleted since it was validated: nobody receives it)
    receives = Q(topic_receives(topic)) if topic is not None else Q(pk__isnull=True)
    return receives if cond.get("status", "subscribed") == "subscribed" else ~receives


# --- {"segment": "vip"} ----------------------------------------------------------------


def _validate_segment(cond: dict[str, Any], path: str, errors: Errors) -> None:
    # Existence and cycles are checked over the whole definition (definition.py).
    if not isinstance(cond.get("segment"), str) or not cond["segment"]:
        errors.add(f"{path}.segment", "A segment slug is required.")


def _compile_segment(cond: dict[str, Any], ctx: CompileContext) -> Q:
    return ctx.segment_q(cond["segment"])


for _condition in (
    ConditionType(
        "field", frozenset({"field", "op", "value"}), _validate_field, _compile_field, "contact"
    ),
    ConditionType(
        "attribute",
        frozenset({"attribute", "op", "value"}),
        _validate_attribute,
        _compile_attribute,
        "contact attribute",
    ),
    ConditionType(
        "reachable",
        frozenset({"reachable", "category"}),
        _validate_reachable,
        _compile_reachable,
        "channel reachability and consent",
    ),
    ConditionType(
        "topic",
        frozenset({"topic", "status"}),
        _validate_topic,
        _compile_topic,
        "subscribed to / unsubscribed from a topic",
    ),
    ConditionType(
        "segment", frozenset({"segment"}), _validate_segment, _compile_segment, "segment"
    ),
):
    register_condition(_condition)
