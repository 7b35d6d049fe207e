"""Conversion attribution: when an applied event is a conversion for some journeys or
broadcasts (their `conversion_events`), credit the one message that earned it and record a
`Conversion` plus a `converted` touchpoint on that message (the customer's timeline).

Rules (docs/ATTRIBUTION.md):
- Eligible: the contact's outbound messages sent (sent_at, else created_at) by such a
  journey (journeys.JourneyMessage) or broadcast (BroadcastRecipient.message) within that
  owner's `conversion_window_hours` before the event's `occurred_at` (the window's first
  instant included), whose touch happened no later than the event.
- Touches: a human `clicked` touchpoint (never `clicked_bot`), or the delivery (status
  delivered/read; its time is delivered_at, else read_at for a read receipt that came first).
- Models: `last_click` owners offer their messages' clicks, then their deliveries;
  `last_touch` owners offer deliveries only. Across owners, any click beats any delivery; among
  clicks, and among deliveries, the latest wins (exact ties: the greater message id, the same
  on both databases). The credit's `model`, revenue property and window are the winning
  message's owner's.
- Once per event: the unique constraint on Conversion.event; a replayed or re-applied event
  changes nothing (the insert and the touchpoint ignore conflicts).

Cost: nothing but a dict lookup for an event no owner counts (the owners are read from the
cache once per batch: insights.selectors.conversion_owners_at); otherwise, on
PostgreSQL, one statement (insights.attribution_sql); elsewhere one indexed query (the latest
click and the latest delivery, as one UNION ALL) and two inserts."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import connection
from django.db.models import F, IntegerField, Q, Value
from django.db.models.functions import Coalesce

from journeys.models import Event
from messaging.conversion import AttributionModel
from messaging.models import Direction, Message, Touchpoint, TouchpointKind
from messaging.services.touchpoints import touchpoint_record

from .attribution_sql import attribute_sql
from .models import Conversion
from .selectors import Owner, conversion_owners_at

MAX_REVENUE = Decimal(10) ** 12  # Conversion.revenue: 14 digits, 2 after the point
CENT = Decimal("0.01")
_NUMBER = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,10})?$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
DELIVERED = ("delivered", "read")
OWNER_LOOKUP = {
    "journey": "journey_link__journey_id",
    "broadcast": "broadcast_recipient__broadcast_id",
}


def revenue_parse(value: Any) -> Decimal | None:
    """A non-negative amount with cents from a number or a plain decimal string ("49.90");
    anything else (booleans, NaN, exponents, negatives, too large) is None, never an error."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _NUMBER.match(value):
            return None
    elif not isinstance(value, int | float | Decimal):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0 or amount >= MAX_REVENUE:
        return None
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def currency_parse(value: Any) -> str:
    """An ISO-4217-shaped code ("EUR"), upper-cased; "" for anything else."""
    return value.upper() if isinstance(value, str) and _CURRENCY.match(value) else ""


def _owned_since(owners: list[Owner], at: dt.datetime, prefix: str) -> Q:
    """Messages of one of these owners sent within that owner's window before `at` (the
    query annotates `sent`). One condition per owner kind and window, not per owner."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for owner in owners:
        groups[(owner.kind, owner.window_hours)].append(owner.id)
    condition = Q()
    for (kind, hours), ids in groups.items():
        lookup = f"{prefix}{OWNER_LOOKUP[kind]}__in"
        condition |= Q(**{lookup: ids, "sent__gte": at - dt.timedelta(hours=hours)})
    return condition


# What a credit copies from the message (lookups from Message), in this order.
CREDIT = (
    "journey_link__journey_id",
    "journey_link__step_id",
    "broadcast_recipient__broadcast_id",
    "template_id",
    "channel",
)


# The credit row: the same columns in the same order in both halves of the UNION (all
# annotations, so the SELECT lists them in this order).
COLUMNS = ("c_rank", "c_message", "c_touched", "c_journey", "c_step", "c_broadcast")
COLUMNS += ("c_template", "c_channel")


def _columns(rank: int, message: str, touched: str, prefix: str) -> dict[str, Any]:
    values = [Value(rank, output_field=IntegerField()), F(message), F(touched)]
    values += [F(prefix + name) for name in CREDIT]
    return dict(zip(COLUMNS, values, strict=True))


def _clicks(event: Event, owners: list[Owner]):
    """Human clicks on these owners' eligible messages, as credit rows ranked 1."""
    at = event.occurred_at
    longest = max(owner.window_hours for owner in owners)
    return (
        Touchpoint.objects.filter(
            contact_id=event.contact_id,
            kind=TouchpointKind.CLICKED,
            occurred_at__lte=at,
            occurred_at__gte=at - dt.timedelta(hours=longest),
            message__isnull=False,
            message__created_at__lte=at,
        )
        .annotate(sent=Coalesce("message__sent_at", "message__created_at"))
        .filter(_owned_since(owners, at, "message__"))
        .order_by()
        .annotate(**_columns(1, "message_id", "occurred_at", "message__"))
        .values_list(*COLUMNS)
    )


def _deliveries(event: Event, owners: list[Owner]):
    """Deliveries of these owners' eligible messages, as credit rows ranked 0."""
    at = event.occurred_at
    return (
        Message.objects.filter(
            contact_id=event.contact_id,
            direction=Direction.OUTBOUND,
            status__in=DELIVERED,
            created_at__lte=at,
        )
        .annotate(
            sent=Coalesce("sent_at", "created_at"), touched=Coalesce("delivered_at", "read_at")
        )
        .filter(_owned_since(owners, at, ""), touched__lte=at)
        .order_by()
        .annotate(**_columns(0, "id", "touched", ""))
        .values_list(*COLUMNS)
    )


def _best_touch(event: Event, owners: list[Owner]) -> tuple[str, dict[str, Any]] | None:
    """The winning (touch, credit) in one query: clicks of last-click owners rank above every
    delivery, then the latest touch wins."""
    clickers = [o for o in owners if o.model == AttributionModel.LAST_CLICK]
    candidates = _deliveries(event, owners)
    if clickers:
        candidates = _clicks(event, clickers).union(candidates, all=True)
    row = next(iter(candidates.order_by("-c_rank", "-c_touched", "-c_message")[:1]), None)
    if row is None:
        return None
    keys = ("message_id", "touched", "journey", "step", "broadcast", "template", "channel")
    touch = Conversion.Touch.CLICKED if row[0] == 1 else Conversion.Touch.DELIVERED
    return touch, dict(zip(keys, row[1:], strict=True))


def attribute_event(event: Event, now: dt.datetime) -> dict[str, Any] | None:
    """Credit this event to a message if it is a conversion (the journeys.event_hooks hook,
    run in the event's transaction). Returns what was credited for the event's result."""
    owners = conversion_owners_at(now).get(event.name)
    if not owners:
        return None
    owners = list(owners)
    if connection.vendor == "postgresql":
        return _attribute_in_one_statement(event, now, owners)
    best = _best_touch(event, owners)
    if best is None:
        return None
    touch, found = best
    kind, owner_id = (
        ("journey", found["journey"]) if found["journey"] else ("broadcast", found["broadcast"])
    )
    owner = next(o for o in owners if o.kind == kind and o.id == owner_id)
    properties = event.properties if isinstance(event.properties, dict) else {}
    revenue = (
        revenue_parse(properties.get(owner.revenue_property)) if owner.revenue_property else None
    )
    currency = currency_parse(properties.get("currency"))
    Conversion.objects.bulk_create(
        [
            Conversion(
                event_id=event.pk,
                contact_id=event.contact_id,
                message_id=found["message_id"],
                journey_id=found["journey"],
                step_id=found["step"],
                broadcast_id=found["broadcast"],
                template_id=found["template"],
                channel=found["channel"],
                model=owner.model,
                touch=touch,
                event_name=event.name,
                revenue=revenue,
                currency=currency,
                occurred_at=event.occurred_at,
                touched_at=found["touched"],
            )
        ],
        ignore_conflicts=True,
    )
    credit = {
        "event": event.name,
        "event_id": event.pk,
        "journey": found["journey"],
        "step": found["step"],
        "broadcast": found["broadcast"],
        "model": owner.model,
        "touch": touch,
        "revenue": str(revenue) if revenue is not None else None,
        "currency": currency,
    }
    touchpoint_record(
        contact_id=event.contact_id,
        kind=TouchpointKind.CONVERTED,
        direction=Direction.INTERNAL,
        channel=found["channel"],
        message_id=found["message_id"],
        occurred_at=event.occurred_at,
        data=credit,
        dedupe_key=f"conversion:{event.pk}",
    )
    return {"conversion": {"message": str(found["message_id"]), **credit}}


def _attribute_in_one_statement(
    event: Event, now: dt.datetime, owners: list[Owner]
) -> dict[str, Any] | None:
    properties = event.properties if isinstance(event.properties, dict) else {}
    revenue = {
        (o.kind, o.id): revenue_parse(properties.get(o.revenue_property))
        if o.revenue_property
        else None
        for o in owners
    }
    currency = currency_parse(properties.get("currency"))
    row = attribute_sql(
        event_id=event.pk,
        event_name=event.name,
        contact_id=event.contact_id,
        at=event.occurred_at,
        now=now,
        owners=owners,
        clickers=[o for o in owners if o.model == AttributionModel.LAST_CLICK],
        revenue=revenue,
        currency=currency,
    )
    if row is None:
        return None
    rank, message_id, _touched, journey, step, broadcast, model, amount = row
    return {
        "conversion": {
            "message": str(message_id),
            "event": event.name,
            "event_id": event.pk,
            "journey": journey,
            "step": step,
            "broadcast": broadcast,
            "model": model,
            "touch": Conversion.Touch.CLICKED if rank == 1 else Conversion.Touch.DELIVERED,
            "revenue": str(amount) if amount is not None else None,
            "currency": currency,
        }
    }
