"""Reports for a date range: funnels per journey step, broadcast, template and channel; journey
drop-off; and per tracked link. Set-based: every report is a fixed number of aggregate
queries (EXISTS subqueries over indexed foreign keys, GROUP BY in the database), whatever
the number of messages. docs/REPORTS.md defines each metric.

The range selects outbound messages by `created_at` (when the message was made, i.e. sent or
attempted), from the first day 00:00 UTC to the day after the last; everything that happened
to those messages (delivery, opens, clicks, replies, unsubscribes, conversions) counts,
whenever it happened. Drop-off selects step visits by `entered_at` in the same range.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet, Sum
from django.db.models.fields.json import KT

from journeys.models import Journey, Step, StepVisit
from messaging.models import (
    ConsentChange,
    ConsentStatus,
    Direction,
    Message,
    Touchpoint,
    TouchpointKind,
    TrackedLink,
)

from .models import Conversion

MAX_DAYS = 366
SENT = ("sent", "delivered", "read", "undelivered")
DELIVERED = ("delivered", "read")
FAILED = ("failed", "undelivered")

# What each headline number is made of (also shown on the page and in the API).
SOURCES = {
    "opened": "A message counts once when SendGrid reported an open (provider_open) or the "
    "channel reported it read (read_receipt, WhatsApp).",
    "clicked": "A message counts once when a person clicked: a tracked Touchline link "
    "(tracked_link) or SendGrid's click event (provider), both counted once. Bot clicks "
    "(link previews, mail scanners) are never counted; they are shown as clicked_bot.",
}

# The funnel's counters, in report and CSV order.
COUNTS = (
    "messages",
    "sent",
    "delivered",
    "failed",
    "bounced",
    "opened",
    "clicked",
    "replied",
    "engaged",
    "converted",
    "conversions",
    "unsubscribed",
    "complained",
    "opened_provider_open",
    "opened_read_receipt",
    "clicked_tracked_link",
    "clicked_provider",
    "clicked_both",
    "clicked_bot",
)
RATES = {
    "delivery_rate": ("delivered", "sent"),
    "open_rate": ("opened", "delivered"),
    "click_rate": ("clicked", "delivered"),
    "engagement_rate": ("engaged", "delivered"),
    "conversion_rate": ("converted", "delivered"),
    "unsubscribe_rate": ("unsubscribed", "delivered"),
    "bounce_rate": ("bounced", "sent"),
    "complaint_rate": ("complained", "delivered"),
}


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days, both ends included."""

    first: dt.date
    last: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time.min, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.first.isoformat(), "end": self.last.isoformat()}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# Group keys: the message fields a report groups by, and the same on Conversion (aliases
# prefixed "k_" so they never clash with a model field; the rows name them without it).
GROUPS: dict[str, dict[str, Any]] = {
    "step": {
        "message": {
            "k_journey": F("journey_link__journey__slug"),
            "k_step": F("journey_link__step__key"),
        },
        "conversion": {"k_journey": F("journey__slug"), "k_step": F("step__key")},
        "only": Q(journey_link__isnull=False),
    },
    "broadcast": {
        "message": {
            "k_broadcast": F("broadcast_recipient__broadcast__slug"),
            "k_name": F("broadcast_recipient__broadcast__name"),
        },
        "conversion": {"k_broadcast": F("broadcast__slug"), "k_name": F("broadcast__name")},
        "only": Q(broadcast_recipient__isnull=False),
    },
    "template": {
        "message": {
            "k_template": F("template__slug"),
            "k_template_channel": F("template__channel"),
        },
        "conversion": {
            "k_template": F("template__slug"),
            "k_template_channel": F("template__channel"),
        },
        "only": Q(template__isnull=False),
    },
    "channel": {
        "message": {"k_channel": F("channel")},
        "conversion": {"k_channel": F("channel")},
        "only": Q(),
    },
}


def scoped_messages(
    *,
    period: DateRange,
    journey: str = "",
    broadcast: str = "",
    template: str = "",
    channel: str = "",
) -> QuerySet[Message]:
    """Outbound messages made in the period, narrowed to a journey (slug, every version), a
    broadcast (slug), a template (slug, every channel) or a channel."""
    messages = Message.objects.filter(
        direction=Direction.OUTBOUND, created_at__gte=period.start, created_at__lt=period.end
    )
    if journey:
        messages = messages.filter(journey_link__journey__slug=journey)
    if broadcast:
        messages = messages.filter(broadcast_recipient__broadcast__slug=broadcast)
    if template:
        messages = messages.filter(template__slug=template)
    if channel:
        messages = messages.filter(channel=channel)
    return messages


def _flags() -> dict[str, Any]:
    """Per message: EXISTS subqueries, each over an indexed foreign key to the message."""
    touch = Touchpoint.objects.filter(message_id=OuterRef("pk"))
    clicked = touch.filter(kind=TouchpointKind.CLICKED)
    unsubscribed = ConsentChange.objects.filter(status=ConsentStatus.UNSUBSCRIBED)
    return {
        "_opened": Exists(touch.filter(kind=TouchpointKind.OPENED)),
        # Tracked links put the link's id in the touchpoint; SendGrid's events do not.
        "_clicked_tracked": Exists(clicked.filter(data__has_key="link")),
        "_clicked_provider": Exists(clicked.exclude(data__has_key="link")),
        "_clicked_bot": Exists(touch.filter(kind=TouchpointKind.CLICKED_BOT)),
        "_bounced": Exists(touch.filter(kind=TouchpointKind.BOUNCED)),
        "_complained": Exists(touch.filter(kind=TouchpointKind.COMPLAINED)),
        "_replied": Exists(Message.objects.filter(in_reply_to_id=OuterRef("pk"))),
        # An unsubscribe is this message's when its ledger row or timeline entry names the
        # message (one-click link, SendGrid's unsubscribe or spam report, a provider opt-out)
        # or names a reply to it (STOP texted back).
        "_unsubscribed": Exists(touch.filter(kind=TouchpointKind.UNSUBSCRIBED))
        | Exists(unsubscribed.filter(message_id=OuterRef("pk")))
        # (driven from the replies' index: a message has few replies)
        | Exists(
            Message.objects.filter(in_reply_to_id=OuterRef("pk")).filter(
                Exists(unsubscribed.filter(message_id=OuterRef("pk")))
            )
        ),
        "_converted": Exists(Conversion.objects.filter(message_id=OuterRef("pk"))),
    }


def _aggregates() -> dict[str, Any]:
    opened = Q(_opened=True) | Q(status="read")
    clicked = Q(_clicked_tracked=True) | Q(_clicked_provider=True)
    return {
        "messages": Count("pk"),
        "sent": Count("pk", filter=Q(status__in=SENT) | Q(sent_at__isnull=False)),
        "delivered": Count("pk", filter=Q(status__in=DELIVERED)),
        "failed": Count("pk", filter=Q(status__in=FAILED)),
        "bounced": Count("pk", filter=Q(_bounced=True)),
        "opened": Count("pk", filter=opened),
        "clicked": Count("pk", filter=clicked),
        "replied": Count("pk", filter=Q(_replied=True)),
        "engaged": Count("pk", filter=opened | clicked | Q(_replied=True)),
        "converted": Count("pk", filter=Q(_converted=True)),
        "unsubscribed": Count("pk", filter=Q(_unsubscribed=True)),
        "complained": Count("pk", filter=Q(_complained=True)),
        "opened_provider_open": Count("pk", filter=Q(_opened=True)),
        "opened_read_receipt": Count("pk", filter=Q(status="read")),
        "clicked_tracked_link": Count("pk", filter=Q(_clicked_tracked=True)),
        "clicked_provider": Count("pk", filter=Q(_clicked_provider=True)),
        "clicked_both": Count("pk", filter=Q(_clicked_tracked=True, _clicked_provider=True)),
        "clicked_bot": Count("pk", filter=Q(_clicked_bot=True)),
    }


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    for name, (part, whole) in RATES.items():
        row[name] = _rate(row[part], row[whole])
    return row


def funnel_report(*, group: str, period: DateRange, **scope: str) -> dict[str, Any]:
    """Funnel rows per `group` ("step", "broadcast", "template" or "channel") and in total,
    for the messages `scoped_messages` selects; revenue per currency. Two queries."""
    spec = GROUPS[group]
    keys = list(spec["message"])
    messages = scoped_messages(period=period, **scope).filter(spec["only"]).order_by()
    rows = list(
        messages.annotate(**spec["message"])
        .values(*keys)
        .annotate(**_flags())
        .values(*keys)  # group by the keys only, not by the flags
        .annotate(**_aggregates())
        .order_by(*keys)
    )
    conversions = (
        Conversion.objects.filter(message__in=messages.values("pk"))
        .annotate(**spec["conversion"])
        .values(*keys, "currency")
        .annotate(n=Count("pk"), revenue=Sum("revenue"))
        .order_by()
    )
    revenue: dict[tuple, dict[str, Decimal]] = defaultdict(dict)
    counted: dict[tuple, int] = defaultdict(int)
    for row in conversions:
        key = tuple(row[k] for k in keys)
        counted[key] += row["n"]
        if row["revenue"] is not None:
            currency = row["currency"] or "—"
            revenue[key][currency] = revenue[key].get(currency, Decimal(0)) + row["revenue"]
    out = []
    for row in rows:
        key = tuple(row[k] for k in keys)
        named = {k[2:]: row.pop(k) for k in keys}
        row["conversions"] = counted.get(key, 0)
        row["revenue"] = {c: str(v) for c, v in sorted(revenue.get(key, {}).items())}
        out.append(_with_rates({**named, **row}))
    totals = _with_rates({name: sum(r[name] for r in out) for name in COUNTS})
    total_revenue: dict[str, Decimal] = defaultdict(Decimal)
    for per_currency in revenue.values():
        for currency, amount in per_currency.items():
            total_revenue[currency] += amount
    totals["revenue"] = {c: str(v) for c, v in sorted(total_revenue.items())}
    return {
        "report": group,
        "period": period.as_dict(),
        "scope": {k: v for k, v in scope.items() if v},
        "rows": out,
        "totals": totals,
        "sources": SOURCES,
    }


def journey_dropoff(*, journey: str, period: DateRange) -> list[dict[str, Any]]:
    """Per step of the journey (every version, by step key, in position order): enrollments
    that entered it in the period, and how many of the previous step's were lost. Two
    queries."""
    visits = {
        row["step__key"]: row["n"]
        for row in StepVisit.objects.filter(
            step__journey__slug=journey,
            entered_at__gte=period.start,
            entered_at__lt=period.end,
        )
        .values("step__key")
        .annotate(n=Count("enrollment_id", distinct=True))
        .order_by()
    }
    steps = (
        Step.objects.filter(journey__slug=journey)
        .values("key")
        .annotate(first=Min("position"), step_kind=Min("kind"))
        .order_by("first", "key")
    )
    out, previous = [], None
    for step in steps:
        entered = visits.get(step["key"], 0)
        lost = max(previous - entered, 0) if previous is not None else None
        out.append(
            {
                "step": step["key"],
                "kind": step["step_kind"],
                "position": step["first"],
                "entered": entered,
                "lost": lost,
                "lost_share": _rate(lost, previous) if lost is not None else None,
            }
        )
        previous = entered
    return out


def journey_report(*, journey: str, period: DateRange) -> dict[str, Any]:
    """A journey's funnel per step with its drop-off (four queries)."""
    report = funnel_report(group="step", period=period, journey=journey)
    dropoff = journey_dropoff(journey=journey, period=period)
    by_step = {row["step"]: row for row in report["rows"]}
    # Every step in position order, the message funnel beside the drop-off.
    report["steps"] = [{**d, **by_step.get(d["step"], {})} for d in dropoff]
    return report


def link_report(*, period: DateRange, **scope: str) -> dict[str, Any]:
    """Per tracked link (its original URL) and channel: messages that carried it, clicks by
    people, unique clickers, and bot clicks apart. Two queries."""
    messages = scoped_messages(period=period, **scope).order_by().values("pk")
    carried = {
        (row["url"], row["message__channel"]): row["n"]
        for row in TrackedLink.objects.filter(message__in=messages)
        .values("url", "message__channel")
        .annotate(n=Count("message_id", distinct=True))
        .order_by()
    }
    human = Q(kind=TouchpointKind.CLICKED)
    clicks = {
        (row["url"], row["channel"]): row
        for row in Touchpoint.objects.filter(
            message__in=messages,
            kind__in=(TouchpointKind.CLICKED, TouchpointKind.CLICKED_BOT),
            data__has_key="link",
        )
        .annotate(url=KT("data__url"))
        .values("url", "channel")
        .annotate(
            clicks=Count("pk", filter=human),
            unique_clickers=Count("contact_id", filter=human, distinct=True),
            messages_clicked=Count("message_id", filter=human, distinct=True),
            bot_clicks=Count("pk", filter=~human),
        )
        .order_by()
    }
    rows = []
    for url, channel in sorted(set(carried) | set(clicks), key=lambda k: (k[0] or "", k[1])):
        found = clicks.get((url, channel), {})
        sent = carried.get((url, channel), 0)
        rows.append(
            {
                "url": url or "",
                "channel": channel,
                "messages": sent,
                "clicks": found.get("clicks", 0),
                "unique_clickers": found.get("unique_clickers", 0),
                "messages_clicked": found.get("messages_clicked", 0),
                "click_rate": _rate(found.get("messages_clicked", 0), sent),
                "bot_clicks": found.get("bot_clicks", 0),
            }
        )
    rows.sort(key=lambda r: (-r["clicks"], r["url"], r["channel"]))
    return {
        "report": "links",
        "period": period.as_dict(),
        "scope": {k: v for k, v in scope.items() if v},
        "rows": rows,
        "sources": {
            "clicks": "Tracked Touchline links only (a person's click, repeated clicks on one "
            "link within a minute counted once); bot_clicks are link previews and scanners."
        },
    }


def journey_slugs() -> list[str]:
    return list(Journey.objects.order_by("slug").values_list("slug", flat=True).distinct())
