"""Broadcast reports: outcomes per channel, held/skipped reasons, activity per hour and an
overview of recent broadcasts. Aggregates only (GROUP BY in the database): a fixed number of
queries whatever the number of recipients.

Conversions are the broadcast's conversion events within its window after the send (every
such event after a recipient's message counts here, per recipient; insights' attribution
credits each event to one message across journeys and broadcasts instead). Events belong
to journeys, a sibling app that campaigns must not import; every ingested event is also a
`kind="event"` touchpoint in messaging (journeys.services._apply_event writes it, with the
event's name in `data`), so conversions are counted from the touchpoint log, which both apps
already depend on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Coalesce, TruncHour

from channels_app.channels import Channel
from messaging.models import ConsentChange, ConsentStatus, Direction, Message, Touchpoint

from .models import Broadcast, BroadcastRecipient

SENT = ("sent", "delivered", "read")
DELIVERED = ("delivered", "read")
FAILED = ("failed", "undelivered")
# Accepted by the provider: what "sent" means in a report (as in journeys' dashboards).
ACCEPTED = Q(message__status__in=(*SENT, "undelivered")) | Q(message__sent_at__isnull=False)
METRICS = (
    "recipients",
    "sent",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "replied",
    "unsubscribed",
    "conversions",
)
MAX_HOURS = 24 * 14


def _sent_time():
    return Coalesce(F("message__sent_at"), F("message__created_at"))


def _outer_sent_time():
    return Coalesce(OuterRef("message__sent_at"), OuterRef("message__created_at"))


def _engagement(broadcast: Broadcast) -> dict[str, Any]:
    """Per recipient: EXISTS subqueries for what happened after their message."""
    touch = Touchpoint.objects.filter(message_id=OuterRef("message_id"))
    flags: dict[str, Any] = {
        "_opened": Exists(touch.filter(kind="opened")),
        "_clicked": Exists(touch.filter(kind="clicked")),
        "_replied": Exists(Message.objects.filter(in_reply_to_id=OuterRef("message_id"))),
        "_unsubscribed": Exists(
            ConsentChange.objects.filter(
                contact_id=OuterRef("contact_id"),
                channel=OuterRef("channel"),
                status=ConsentStatus.UNSUBSCRIBED,
                changed_at__gte=OuterRef("message__created_at"),
            )
        ),
    }
    events = [e for e in broadcast.conversion_events or [] if isinstance(e, str)]
    if events:
        window = dt.timedelta(hours=broadcast.conversion_window_hours)
        flags["_converted"] = Exists(
            Touchpoint.objects.filter(
                contact_id=OuterRef("contact_id"),
                kind="event",
                data__name__in=events,
                occurred_at__gte=_outer_sent_time(),
                occurred_at__lte=ExpressionWrapper(
                    _outer_sent_time() + Value(window, output_field=DurationField()),
                    output_field=DateTimeField(),
                ),
            )
        )
    else:
        flags["_converted"] = Value(False)
    return flags


def _counts(recipients: QuerySet[BroadcastRecipient], broadcast: Broadcast, by: list[str]):
    with_message = Q(message__isnull=False)
    return (
        recipients.order_by()
        .annotate(**_engagement(broadcast))
        .values(*by)
        .annotate(
            recipients=Count("pk"),
            sent=Count("pk", filter=ACCEPTED),
            delivered=Count("pk", filter=Q(message__status__in=DELIVERED)),
            failed=Count(
                "pk",
                filter=Q(message__status__in=FAILED) | Q(state=BroadcastRecipient.State.FAILED),
            ),
            # an email open is a touchpoint; a WhatsApp read receipt is the message's status
            opened=Count("pk", filter=with_message & (Q(_opened=True) | Q(message__status="read"))),
            clicked=Count("pk", filter=with_message & Q(_clicked=True)),
            replied=Count("pk", filter=with_message & Q(_replied=True)),
            unsubscribed=Count("pk", filter=with_message & Q(_unsubscribed=True)),
            conversions=Count("pk", filter=with_message & Q(_converted=True)),
        )
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def broadcast_report(*, broadcast: Broadcast) -> dict[str, Any]:
    """Per channel (the channel a recipient was sent, held or skipped on; "" for none) and in
    total: recipients, sent, delivered, failed, opened, clicked, replied, unsubscribed and
    conversions; recipients per state; held and skipped per reason."""
    recipients = BroadcastRecipient.objects.filter(broadcast=broadcast)
    rows = {row.pop("channel"): row for row in _counts(recipients, broadcast, ["channel"])}
    channels = []
    for channel in [*Channel.values, ""]:
        if channel in rows:
            row = rows[channel]
            channels.append(
                {
                    "channel": channel or "none",
                    **row,
                    "delivery_rate": _rate(row["delivered"], row["sent"]),
                    "conversion_rate": _rate(row["conversions"], row["sent"]),
                }
            )
    totals = {m: sum(c[m] for c in channels) for m in METRICS}
    states = dict.fromkeys(BroadcastRecipient.State.values, 0)
    reasons: dict[str, dict[str, int]] = {"held": {}, "skipped": {}, "failed": {}}
    for row in recipients.order_by().values("state", "reason").annotate(n=Count("pk")):
        states[row["state"]] = states.get(row["state"], 0) + row["n"]
        if row["state"] in reasons:
            key = row["reason"] or "unspecified"
            reasons[row["state"]][key] = reasons[row["state"]].get(key, 0) + row["n"]
    return {
        "broadcast": broadcast.slug,
        "status": broadcast.status,
        "conversion_events": list(broadcast.conversion_events or []),
        "conversion_window_hours": broadcast.conversion_window_hours,
        "totals": {
            **totals,
            "delivery_rate": _rate(totals["delivered"], totals["sent"]),
            "conversion_rate": _rate(totals["conversions"], totals["sent"]),
        },
        "channels": channels,
        "states": states,
        "reasons": reasons,
    }


def _per_hour(queryset: QuerySet, stamp: str) -> dict[dt.datetime, int]:
    rows = (
        queryset.filter(**{f"{stamp}__isnull": False})
        .annotate(hour=TruncHour(stamp, tzinfo=dt.UTC))
        .values("hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["hour"]: row["n"] for row in rows}


def broadcast_activity(*, broadcast: Broadcast) -> dict[str, Any]:
    """Sent, delivered, opened and clicked per UTC hour, from the first hour with activity to
    the last (at most MAX_HOURS, the latest kept); hours without activity are zeros."""
    messages = Message.objects.filter(
        broadcast_recipient__broadcast=broadcast, direction=Direction.OUTBOUND
    )
    touches = Touchpoint.objects.filter(message__broadcast_recipient__broadcast=broadcast)
    found = {
        "sent": _per_hour(messages, "sent_at"),
        "delivered": _per_hour(messages, "delivered_at"),
        "opened": _per_hour(touches.filter(kind="opened"), "occurred_at"),
        "clicked": _per_hour(touches.filter(kind="clicked"), "occurred_at"),
    }
    stamps = [h for per_hour in found.values() for h in per_hour]
    if not stamps:
        return {"hours": [], "series": {name: [] for name in found}}
    last = max(stamps)
    first = max(min(stamps), last - dt.timedelta(hours=MAX_HOURS - 1))
    hours = []
    at = first
    while at <= last:
        hours.append(at)
        at += dt.timedelta(hours=1)
    return {
        "hours": [h.isoformat() for h in hours],
        "series": {name: [per_hour.get(h, 0) for h in hours] for name, per_hour in found.items()},
    }


def broadcasts_overview(*, limit: int = 10) -> list[dict[str, Any]]:
    """The latest broadcasts with their status and headline figures (two queries)."""
    broadcasts = list(
        Broadcast.objects.order_by("-created_at", "-id").values(
            "id", "name", "slug", "status", "recipient_count", "launched_at"
        )[:limit]
    )
    ids = [b["id"] for b in broadcasts]
    figures = {
        row.pop("broadcast_id"): row
        for row in BroadcastRecipient.objects.filter(broadcast_id__in=ids)
        .order_by()
        .values("broadcast_id")
        .annotate(
            recipients=Count("pk"),
            sent=Count("pk", filter=ACCEPTED),
            delivered=Count("pk", filter=Q(message__status__in=DELIVERED)),
            failed=Count(
                "pk",
                filter=Q(message__status__in=FAILED) | Q(state=BroadcastRecipient.State.FAILED),
            ),
            held=Count("pk", filter=Q(state=BroadcastRecipient.State.HELD)),
            skipped=Count("pk", filter=Q(state=BroadcastRecipient.State.SKIPPED)),
        )
    }
    empty = {"recipients": 0, "sent": 0, "delivered": 0, "failed": 0, "held": 0, "skipped": 0}
    return [{**b, **figures.get(b["id"], empty)} for b in broadcasts]
