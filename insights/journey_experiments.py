"""A journey's experiment results: the holdout (treated vs control) and each A/B split's
variants, with conversions and significance (insights.significance.compare).

Both count contacts, not enrollments: a contact's first enrollment entered in the range (for
a split, its first enrollment in the range that reached the split) decides its group and
variant, and the contact converted when one of the journey's conversion events (its
`conversion_events`, else its goal event) happened within `conversion_window_hours` after
that first entry — whether or not a message was sent, so the control group is counted the
same way. (Counting enrollments would inflate the control: a held-out enrollment ends at
once, so under "once at a time" a control contact re-enters at every trigger while a treated
one is still in the journey.) Every figure is one aggregate query: the first entry is a NOT
EXISTS of an earlier one, the conversion test an EXISTS over the events index (contact,
name, occurred_at), never a loop in Python.

The results cover every version of the journey (its slug): a contact's group and variant
depend on the slug and the step key only, so they stay the same across versions.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Substr

from journeys.experiments import VARIANT_OUTCOME, variant_of
from journeys.models import Enrollment, Event, Journey, JourneyMessage, Step, StepVisit

from .models import Conversion
from .significance import compare


def conversion_event_names(journey: Journey) -> list[str]:
    names = [n for n in (journey.conversion_events or []) if isinstance(n, str) and n]
    if not names and journey.goal_event:
        names = [journey.goal_event]
    return names


def _converted(journey: Journey, prefix: str = "") -> Exists | Value:
    """EXISTS a conversion event of the enrollment's contact within the window after it
    entered (`prefix` reaches the enrollment from the queried model); false when the journey
    names no conversion event."""
    names = conversion_event_names(journey)
    if not names:
        return Value(False, output_field=BooleanField())
    entered = OuterRef(f"{prefix}entered_at")
    window = dt.timedelta(hours=journey.conversion_window_hours)
    return Exists(
        Event.objects.filter(
            contact_id=OuterRef(f"{prefix}contact_id"),
            name__in=names,
            occurred_at__gte=entered,
            occurred_at__lte=ExpressionWrapper(entered + window, output_field=DateTimeField()),
        )
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _entered_between(
    queryset: QuerySet, prefix: str, start: dt.datetime | None, end: dt.datetime | None
) -> QuerySet:
    if start is not None:
        queryset = queryset.filter(**{f"{prefix}entered_at__gte": start})
    if end is not None:
        queryset = queryset.filter(**{f"{prefix}entered_at__lt": end})
    return queryset


def holdout_results(
    journey: Journey, start: dt.datetime | None, end: dt.datetime | None
) -> dict[str, Any]:
    """Treated (contacts whose first enrollment in the range was not held out) vs control
    (held out), one query."""

    def in_range(queryset: QuerySet) -> QuerySet:
        return _entered_between(queryset.filter(journey__slug=journey.slug), "", start, end)

    earlier = in_range(Enrollment.objects.filter(contact_id=OuterRef("contact_id"))).filter(
        Q(entered_at__lt=OuterRef("entered_at"))
        | Q(entered_at=OuterRef("entered_at"), pk__lt=OuterRef("pk"))
    )
    enrollments = in_range(Enrollment.objects.all()).filter(~Exists(earlier))
    enrollments = enrollments.annotate(_converted=_converted(journey))
    yes = Q(_converted=True)
    counts = enrollments.aggregate(
        treated=Count("pk", filter=Q(holdout=False)),
        treated_converted=Count("pk", filter=Q(holdout=False) & yes),
        control=Count("pk", filter=Q(holdout=True)),
        control_converted=Count("pk", filter=Q(holdout=True) & yes),
    )
    return compare(**counts).as_dict()


def _variant_revenue(
    slug: str, start: dt.datetime | None, end: dt.datetime | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Conversions credited to messages of steps an enrollment reached at or after its split
    visit, summed per (split step key, variant): one query. A conversion counts once per
    split it followed."""
    table = {
        m: connection.ops.quote_name(m._meta.db_table)
        for m in (Conversion, JourneyMessage, StepVisit, Step, Journey, Enrollment)
    }
    where, params = (
        ["j.slug = %s", "split.kind = %s", "sv.outcome LIKE %s"],
        [
            slug,
            Step.Kind.SPLIT,
            VARIANT_OUTCOME + "%",
        ],
    )
    if start is not None:
        where.append("e.entered_at >= %s")
        params.append(start)
    if end is not None:
        where.append("e.entered_at < %s")
        params.append(end)
    # Table names from the models and fixed conditions only; values are parameters.
    sql = f"""
        SELECT split.key, sv.outcome, COUNT(DISTINCT c.id), SUM(c.revenue)
        FROM {table[Conversion]} c
        JOIN {table[JourneyMessage]} jm ON jm.message_id = c.message_id
        JOIN {table[Enrollment]} e ON e.id = jm.enrollment_id
        JOIN {table[StepVisit]} sv ON sv.enrollment_id = jm.enrollment_id
        JOIN {table[Step]} split ON split.id = sv.step_id
        JOIN {table[Journey]} j ON j.id = split.journey_id
        WHERE {" AND ".join(where)}
          AND EXISTS (
            SELECT 1 FROM {table[StepVisit]} later
            WHERE later.enrollment_id = jm.enrollment_id AND later.step_id = jm.step_id
              AND later.entered_at >= sv.entered_at
          )
        GROUP BY split.key, sv.outcome
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {
        (key, variant_of(outcome)): {
            "conversions_attributed": count,
            "revenue": str(Decimal(str(revenue)).quantize(Decimal("0.01")))
            if revenue is not None
            else None,
        }
        for key, outcome, count, revenue in rows
    }


def split_results(
    journey: Journey, start: dt.datetime | None, end: dt.datetime | None
) -> list[dict[str, Any]]:
    """Per split step and variant: entered and converted (contacts, by their first visit of
    the split in the range), rate, revenue, and a comparison of each variant with the first
    (treated = the variant, control = the first)."""

    def split_visits(queryset: QuerySet) -> QuerySet:
        return _entered_between(
            queryset.filter(
                step__journey__slug=journey.slug,
                step__kind=Step.Kind.SPLIT,
                outcome__startswith=VARIANT_OUTCOME,
            ),
            "enrollment__",
            start,
            end,
        )

    here = "enrollment__entered_at"
    earlier = split_visits(
        StepVisit.objects.filter(
            step__key=OuterRef("step__key"),
            enrollment__contact_id=OuterRef("enrollment__contact_id"),
        )
    ).filter(
        Q(**{f"{here}__lt": OuterRef(here)})
        | Q(**{here: OuterRef(here), "enrollment_id__lt": OuterRef("enrollment_id")})
        | Q(enrollment_id=OuterRef("enrollment_id"), pk__lt=OuterRef("pk"))
    )
    visits = split_visits(StepVisit.objects.all()).filter(~Exists(earlier))
    visits = visits.annotate(_converted=_converted(journey, prefix="enrollment__"))
    yes = Q(_converted=True)
    rows = (
        visits.annotate(variant=Substr("outcome", len(VARIANT_OUTCOME) + 1))
        .values("step__key", "variant")
        .annotate(
            entered=Count("enrollment__contact_id", distinct=True),
            converted=Count("enrollment__contact_id", distinct=True, filter=yes),
        )
        .order_by()
    )
    counts = {(r["step__key"], r["variant"]): r for r in rows}
    revenue = _variant_revenue(journey.slug, start, end)
    # The order and weights of this version's splits, then what older versions had.
    configured: dict[str, list[dict[str, Any]]] = {}
    for step in journey.steps.filter(kind=Step.Kind.SPLIT):
        variants = (step.config or {}).get("variants") or []
        configured[step.key] = [v for v in variants if isinstance(v, dict)]
    for key, variant in sorted(counts):
        listed = configured.setdefault(key, [])
        if variant not in {str(v.get("key")) for v in listed}:
            listed.append({"key": variant, "weight": None, "goto": None})
    splits = []
    for key, variants in configured.items():
        out: list[dict[str, Any]] = []
        for variant in variants:
            row = counts.get((key, str(variant.get("key"))), {})
            entered, conv = row.get("entered", 0), row.get("converted", 0)
            money = revenue.get((key, str(variant.get("key"))), {})
            out.append(
                {
                    "key": str(variant.get("key")),
                    "weight": variant.get("weight"),
                    "goto": variant.get("goto"),
                    "entered": entered,
                    "converted": conv,
                    "conversion_rate": _rate(conv, entered),
                    "conversions_attributed": money.get("conversions_attributed", 0),
                    "revenue": money.get("revenue"),
                    "comparison": None,
                }
            )
        first = out[0] if out else None
        for variant in out[1:]:
            variant["comparison"] = compare(
                treated=variant["entered"],
                treated_converted=variant["converted"],
                control=first["entered"],
                control_converted=first["converted"],
            ).as_dict()
        splits.append({"step": key, "baseline": first["key"] if first else None, "variants": out})
    return splits


def journey_experiment(
    *, journey: Journey, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> dict[str, Any]:
    """Everything the experiment page and API show, for contacts by their first enrollment
    that entered in [start, end) (either bound may be None: open)."""
    return {
        "journey": journey.slug,
        "journey_id": journey.pk,
        "version": journey.version,
        "holdout_percent": journey.holdout_percent,
        "conversion_events": conversion_event_names(journey),
        "conversion_window_hours": journey.conversion_window_hours,
        "entered_from": start.isoformat() if start else None,
        "entered_to": end.isoformat() if end else None,
        "holdout": holdout_results(journey, start, end),
        "splits": split_results(journey, start, end),
    }
