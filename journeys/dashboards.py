"""Figures for the staff dashboards (home and per journey), from aggregate queries only.

Each function runs a fixed number of queries whatever the number of messages or answers:
rows are grouped and counted in the database, and Python only fills in the empty days.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate, TruncWeek
from django.utils import timezone

from channels_app.channels import Channel
from messaging.models import Direction, Message

from .models import Journey, JourneyMessage, SurveyResponse
from .stats import DELIVERED, FAILED, SENT, journey_stats
from .surveys import nps_score

MAX_DAYS = 365
MAX_WEEKS = 104
CHANNELS: tuple[str, ...] = tuple(Channel.values)

# The provider accepted these: the denominator of delivery and reply rates. Undelivered
# messages count (they were sent), so a rate is never flattered by leaving failures out; a
# message that went straight from `sending` to `delivered` has no sent_at, hence the status.
_ACCEPTED = Q(message__status__in=(*SENT, "undelivered")) | Q(message__sent_at__isnull=False)

_NPS_COUNTS = {
    "promoters": Count("pk", filter=Q(nps_category="promoter")),
    "passives": Count("pk", filter=Q(nps_category="passive")),
    "detractors": Count("pk", filter=Q(nps_category="detractor")),
}


def _window(days: int, now: dt.datetime) -> tuple[list[dt.date], dt.datetime, dt.datetime]:
    """The last `days` UTC dates up to today, and the instants that bound them."""
    today = now.astimezone(dt.UTC).date()
    dates = [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]
    start = dt.datetime.combine(dates[0], dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return dates, start, end


def _per_day_per_channel(
    queryset: QuerySet[Message], stamp: str, start: dt.datetime, end: dt.datetime
) -> dict[tuple[dt.date, str], int]:
    rows = (
        queryset.filter(**{f"{stamp}__gte": start, f"{stamp}__lt": end})
        .annotate(day=TruncDate(stamp, tzinfo=dt.UTC))
        .values("day", "channel")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(row["day"], row["channel"]): row["n"] for row in rows}


def message_activity(*, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    """Messages sent, delivered and failed, and replies, per UTC day and channel.

    Sent counts outbound messages by `sent_at` still in sent/delivered/read; delivered by
    `delivered_at`; failed (failed or undelivered) by `failed_at`; replies are inbound
    messages by `received_at`.
    """
    dates, start, end = _window(days, now or timezone.now())
    outbound = Message.objects.filter(direction=Direction.OUTBOUND)
    counts = {
        "sent": _per_day_per_channel(outbound.filter(status__in=SENT), "sent_at", start, end),
        "delivered": _per_day_per_channel(
            outbound.filter(status__in=DELIVERED), "delivered_at", start, end
        ),
        "failed": _per_day_per_channel(outbound.filter(status__in=FAILED), "failed_at", start, end),
        "replies": _per_day_per_channel(
            Message.objects.filter(direction=Direction.INBOUND), "received_at", start, end
        ),
    }
    series = {
        metric: {ch: [found.get((day, ch), 0) for day in dates] for ch in CHANNELS}
        for metric, found in counts.items()
    }
    totals = {
        metric: {ch: sum(values) for ch, values in per_channel.items()}
        for metric, per_channel in series.items()
    }
    for per_channel in totals.values():
        per_channel["all"] = sum(per_channel.values())
    return {
        "days": [day.isoformat() for day in dates],
        "channels": list(CHANNELS),
        "series": series,
        "totals": totals,
    }


def _with_score(counts: dict[str, Any]) -> dict[str, Any]:
    answered = counts["promoters"] + counts["passives"] + counts["detractors"]
    return {
        **counts,
        "answered": answered,
        "score": nps_score(counts["promoters"], counts["detractors"], answered),
    }


def nps_overview(*, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    """NPS over the window, overall and per journey version (those with answers only)."""
    _, start, end = _window(days, now or timezone.now())
    rows = (
        SurveyResponse.objects.filter(answered_at__gte=start, answered_at__lt=end)
        .exclude(nps_category="")
        .values("journey_id", "journey__name", "journey__slug", "journey__version")
        .annotate(**_NPS_COUNTS)
        .order_by("journey__name", "-journey__version")
    )
    journeys = [
        _with_score(
            {
                "id": row["journey_id"],
                "name": row["journey__name"],
                "slug": row["journey__slug"],
                "version": row["journey__version"],
                **{key: row[key] for key in _NPS_COUNTS},
            }
        )
        for row in rows
    ]
    overall = _with_score({key: sum(j[key] for j in journeys) for key in _NPS_COUNTS})
    return {"overall": overall, "journeys": journeys}


def journey_list() -> list[dict[str, Any]]:
    """Every journey version but archived ones, for links to their dashboards."""
    return list(
        Journey.objects.exclude(status=Journey.Status.ARCHIVED)
        .order_by("name", "-version")
        .values("id", "name", "slug", "status", "version")
    )


def journey_channel_rates(journey: Journey) -> list[dict[str, Any]]:
    """Per channel, of the journey's messages: accepted by the provider ("sent"),
    delivered, failed, replied to, and delivered/sent and replied/sent rates."""
    replies = Message.objects.filter(in_reply_to_id=OuterRef("message_id"))
    rows = (
        JourneyMessage.objects.filter(journey=journey)
        .values("message__channel")
        .annotate(
            messages=Count("pk"),
            sent=Count("pk", filter=_ACCEPTED),
            delivered=Count("pk", filter=Q(message__status__in=DELIVERED)),
            failed=Count("pk", filter=Q(message__status__in=FAILED)),
            skipped=Count("pk", filter=Q(message__status="skipped")),
            replied=Count("pk", filter=Q(Exists(replies))),
        )
        .order_by("message__channel")
    )
    found = {row.pop("message__channel"): row for row in rows}
    result = []
    for channel in CHANNELS:
        if channel not in found:
            continue
        row = found[channel]
        sent = row["sent"]
        result.append(
            {
                "channel": channel,
                **row,
                "delivery_rate": round(row["delivered"] / sent, 4) if sent else None,
                "reply_rate": round(row["replied"] / sent, 4) if sent else None,
            }
        )
    return result


def journey_nps_weekly(
    journey: Journey, *, weeks: int = 12, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Promoters, passives, detractors and score per ISO week (Monday, UTC), oldest first;
    weeks without answers have zero counts and no score."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    this_monday = today - dt.timedelta(days=today.weekday())
    mondays = [this_monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    start = dt.datetime.combine(mondays[0], dt.time.min, tzinfo=dt.UTC)
    rows = (
        SurveyResponse.objects.filter(journey=journey, answered_at__gte=start)
        .exclude(nps_category="")
        .annotate(week=TruncWeek("answered_at", tzinfo=dt.UTC))
        .values("week")
        .annotate(**_NPS_COUNTS)
        .order_by("week")
    )
    found = {_as_date(row.pop("week")): row for row in rows}
    empty = dict.fromkeys(_NPS_COUNTS, 0)
    return [
        {"week": monday.isoformat(), **_with_score(found.get(monday, empty))} for monday in mondays
    ]


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.astimezone(dt.UTC).date() if isinstance(value, dt.datetime) else value


def journey_dashboard(journey: Journey, *, weeks: int = 12) -> dict[str, Any]:
    """Everything the per-journey dashboard draws."""
    stats = journey_stats(journey)
    return {
        "journey": {
            "id": journey.pk,
            "name": journey.name,
            "slug": journey.slug,
            "version": journey.version,
            "status": journey.status,
        },
        "enrollments": stats["enrollments"],
        # Per step: entered, and for send steps the message outcomes (journey_stats).
        "funnel": stats["steps"],
        "channels": journey_channel_rates(journey),
        "nps": stats["nps"],
        "nps_weekly": journey_nps_weekly(journey, weeks=weeks),
    }
