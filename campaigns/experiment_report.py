"""A broadcast experiment's results: per message variant (recipients, sent, delivered,
opened, clicked, replied, converted and their rates), and the holdout comparison (control vs
treated conversion, uplift and its significance). Aggregates only: a fixed number of GROUP BY
queries whatever the audience size.

Conversions are the broadcast's `conversion_events` within `conversion_window_hours`, read
from the touchpoint log (every ingested event is a `kind="event"` touchpoint), as the
broadcast report does: campaigns never reads journeys' or insights' tables.

- A variant's recipient converts after its message (sent, else created).
- Holdout, intent-to-treat: a recipient converts if an event comes within the window after
  its `send_after` (the control group's is the time it would have been sent; it is never
  claimed, so it never moves), or for a recipient that was sent, after its message. Treated =
  every recipient not in the control group, whatever happened to it (skipped, cancelled…).

Significance: campaigns must not import insights (insights → campaigns). insights registers
its two-proportion test (insights.significance.compare) here when it loads
(insights/broadcast_experiments.py); without it the comparison has rates and uplift only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Coalesce

from messaging.models import Message, Touchpoint

from .models import Broadcast, BroadcastRecipient
from .services.split import tests_first, variant_keys, variants_of

R = BroadcastRecipient.State
ACCEPTED = Q(message__status__in=("sent", "delivered", "read", "undelivered")) | Q(
    message__sent_at__isnull=False
)
VARIANT_METRICS = ("sent", "delivered", "opened", "clicked", "replied", "converted")

# (treated, treated_converted, control, control_converted) → a dict of the comparison.
Comparer = Callable[..., dict[str, Any]]
_comparers: list[Comparer] = []


def significance_register(comparer: Comparer) -> None:
    """Called by insights when it loads: the test used for the holdout comparison."""
    _comparers[:] = [comparer]


def conversion_events(broadcast: Broadcast) -> list[str]:
    events = broadcast.conversion_events
    return [e for e in events if isinstance(e, str) and e] if isinstance(events, list) else []


def converted_after(broadcast: Broadcast, anchor: Any) -> Exists | Value:
    """EXISTS a conversion event of the contact within the window after `anchor` (an outer
    expression of the recipient row)."""
    events = conversion_events(broadcast)
    if not events:
        return Value(False)
    window = Value(dt.timedelta(hours=broadcast.conversion_window_hours), DurationField())
    return Exists(
        Touchpoint.objects.filter(
            contact_id=OuterRef("contact_id"),
            kind="event",
            data__name__in=events,
            occurred_at__gte=anchor,
            occurred_at__lte=ExpressionWrapper(anchor + window, output_field=DateTimeField()),
        )
    )


def _message_time():
    return Coalesce(OuterRef("message__sent_at"), OuterRef("message__created_at"))


def variant_counts(broadcast: Broadcast) -> dict[str, dict[str, int]]:
    """variant key → recipients and each metric, counting recipients with a variant (one
    GROUP BY). Before the winner is chosen that is exactly the test group."""
    touch = Touchpoint.objects.filter(message_id=OuterRef("message_id"))
    with_message = Q(message__isnull=False)
    rows = (
        BroadcastRecipient.objects.filter(broadcast=broadcast)
        .exclude(variant="")
        .order_by()
        .annotate(
            _opened=Exists(touch.filter(kind="opened")),
            _clicked=Exists(touch.filter(kind="clicked")),
            _replied=Exists(Message.objects.filter(in_reply_to_id=OuterRef("message_id"))),
            _converted=converted_after(broadcast, _message_time()),
        )
        .values("variant")
        .annotate(
            recipients=Count("pk"),
            sent=Count("pk", filter=ACCEPTED),
            delivered=Count("pk", filter=Q(message__status__in=("delivered", "read"))),
            opened=Count("pk", filter=with_message & (Q(_opened=True) | Q(message__status="read"))),
            clicked=Count("pk", filter=with_message & Q(_clicked=True)),
            replied=Count("pk", filter=with_message & Q(_replied=True)),
            converted=Count("pk", filter=with_message & Q(_converted=True)),
        )
    )
    return {row.pop("variant"): row for row in rows}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def winner_of(counts: dict[str, dict[str, int]], keys: list[str], metric: str) -> str:
    """The variant with the best rate of `metric` per recipient; ties (and no data) go to
    the first variant in the broadcast's order."""
    best, best_rate = keys[0] if keys else "", -1.0
    for key in keys:
        row = counts.get(key) or {}
        rate = _rate(row.get(metric, 0), row.get("recipients", 0)) or 0.0
        if rate > best_rate:
            best, best_rate = key, rate
    return best


def holdout_counts(broadcast: Broadcast) -> dict[str, int]:
    """Control and treated sizes and conversions, intent-to-treat (one query). Both groups
    are anchored at the planned send time (`send_after`), not the treated one at its actual
    send: a throttle or a retry delaying a send would otherwise drop a treated conversion
    the control would have counted."""
    anchor = OuterRef("send_after")
    row = (
        BroadcastRecipient.objects.filter(broadcast=broadcast)
        .order_by()
        .annotate(_converted=converted_after(broadcast, anchor))
        .aggregate(
            control=Count("pk", filter=Q(state=R.CONTROL)),
            control_converted=Count("pk", filter=Q(state=R.CONTROL, _converted=True)),
            treated=Count("pk", filter=~Q(state=R.CONTROL)),
            treated_converted=Count("pk", filter=~Q(state=R.CONTROL) & Q(_converted=True)),
        )
    )
    return {
        k: row[k] or 0 for k in ("treated", "treated_converted", "control", "control_converted")
    }


def _comparison(counts: dict[str, int]) -> dict[str, Any]:
    if _comparers:
        return _comparers[0](**counts)
    t = _rate(counts["treated_converted"], counts["treated"])
    c = _rate(counts["control_converted"], counts["control"])
    uplift = None if t is None or c is None else round((t - c) * 100, 4)
    return {
        **counts,
        "treated_rate": t,
        "control_rate": c,
        "uplift_points": uplift,
        "uplift_relative": None,
        "ci_low_points": None,
        "ci_high_points": None,
        "p_value": None,
        "test": "",
        "significant": False,
    }


def experiment_report(*, broadcast: Broadcast) -> dict[str, Any] | None:
    """The experiment part of the broadcast report; None for a broadcast without one."""
    variants = variants_of(broadcast)
    if not variants and not broadcast.holdout_percent:
        return None
    counts = variant_counts(broadcast) if variants else {}
    rows = []
    for v in variants:
        key = v["template_slug"]
        row = counts.get(key) or {"recipients": 0, **dict.fromkeys(VARIANT_METRICS, 0)}
        rows.append(
            {
                "variant": key,
                "weight": v.get("weight"),
                "winner": key == broadcast.winner_variant,
                **{k: row[k] for k in ("recipients", *VARIANT_METRICS)},
                "rates": {m: _rate(row[m], row["recipients"]) for m in VARIANT_METRICS},
            }
        )
    states = dict(
        BroadcastRecipient.objects.filter(
            broadcast=broadcast, state__in=(R.CONTROL, R.AWAITING_WINNER)
        )
        .order_by()
        .values("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    holdout = None
    if broadcast.holdout_percent or states.get(R.CONTROL):
        holdout = _comparison(holdout_counts(broadcast))
    return {
        "variants": rows,
        "variant_keys": variant_keys(broadcast),
        "test_percent": broadcast.variant_test_percent if tests_first(broadcast) else None,
        "winner_after_hours": broadcast.winner_after_hours if tests_first(broadcast) else None,
        "winner_metric": broadcast.winner_metric if tests_first(broadcast) else "",
        "winner_due_at": broadcast.winner_due_at,
        "winner_variant": broadcast.winner_variant,
        "winner_chosen_at": broadcast.winner_chosen_at,
        "awaiting_winner": states.get(R.AWAITING_WINNER, 0),
        "holdout_percent": broadcast.holdout_percent,
        "control": states.get(R.CONTROL, 0),
        "conversion_events": conversion_events(broadcast),
        "conversion_window_hours": broadcast.conversion_window_hours,
        "holdout": holdout,
    }
