"""A journey's experiment results: the staff page (under /admin/touchline/) and the API
endpoint (GET /api/v1/journeys/<slug>/experiment/), both reading
insights.journey_experiments. Both need what the journey's dashboard needs: the staff page
`journeys.view_journey`, the API key the `journeys:read` scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from journeys.api import current_journey
from journeys.models import Journey

from .dates import date_problem
from .journey_experiments import journey_experiment

DEFAULT_DAYS = 90


class RangeError(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def entry_range(params: Any) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    """`from` and `to` (dates, both included; default: the last 90 days) as the dates and the
    UTC instants [start, end) of entry they cover."""
    today = timezone.now().astimezone(dt.UTC).date()
    values, errors = {}, {}
    for name, default in (("from", today - dt.timedelta(days=DEFAULT_DAYS - 1)), ("to", today)):
        raw = str(params.get(name) or "").strip()
        try:
            values[name] = dt.date.fromisoformat(raw) if raw else default
        except ValueError:
            errors[name] = ["Write a date like 2026-11-23."]
            continue
        problem = date_problem(values[name])
        if problem:
            errors[name] = [problem]
    if not errors and values["from"] > values["to"]:
        errors["to"] = ["Must not be before “from”."]
    if errors:
        raise RangeError(errors)
    start = dt.datetime.combine(values["from"], dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(values["to"] + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return values["from"], values["to"], start, end


# --- Staff page -------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _shown(comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    """A comparison with its figures as text (the template only prints)."""
    if comparison is None:
        return None
    c = comparison
    points = c["uplift_points"]
    return {
        **c,
        "treated_pct": _pct(c["treated_rate"]),
        "control_pct": _pct(c["control_rate"]),
        "uplift": "—" if points is None else f"{points:+.1f} points",
        "relative": "—" if c["uplift_relative"] is None else f"{c['uplift_relative']:+.0%}",
        "ci": "—"
        if c["ci_low_points"] is None
        else f"{c['ci_low_points']:+.1f} to {c['ci_high_points']:+.1f} points",
        "p": "—" if c["p_value"] is None else f"{c['p_value']:.3g}",
        "verdict": (
            "not enough data"
            if not c["test"]
            else ("significant" if c["significant"] else "not significant")
        ),
    }


def _for_display(results: dict[str, Any]) -> dict[str, Any]:
    splits = [
        {
            **split,
            "variants": [
                {**v, "rate_pct": _pct(v["conversion_rate"]), "comparison": _shown(v["comparison"])}
                for v in split["variants"]
            ],
        }
        for split in results["splits"]
    ]
    return {**results, "holdout": _shown(results["holdout"]), "splits": splits}


@staff_member_required
@require_GET
def journey_experiment_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Holdout (treated vs control) and split variants for one journey, by date of entry."""
    if not request.user.has_perm("journeys.view_journey"):
        raise PermissionDenied
    journey = get_object_or_404(Journey, pk=pk)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": f"{journey.name}: experiment",
        "opts": Journey._meta,
        "original": journey,
        "errors": {},
        "results": None,
    }
    try:
        first, last, start, end = entry_range(request.GET)
    except RangeError as exc:
        context["errors"] = exc.errors
        first, last = request.GET.get("from", ""), request.GET.get("to", "")
    else:
        context["results"] = _for_display(journey_experiment(journey=journey, start=start, end=end))
    context.update(date_from=str(first)[:10], date_to=str(last)[:10])
    status = 400 if context["errors"] else 200
    return render(request, "admin/insights/journey_experiment.html", context, status=status)


# --- API --------------------------------------------------------------------------------


class ComparisonOutput(serializers.Serializer):
    treated = serializers.IntegerField()
    treated_converted = serializers.IntegerField()
    control = serializers.IntegerField()
    control_converted = serializers.IntegerField()
    treated_rate = serializers.FloatField(allow_null=True)
    control_rate = serializers.FloatField(allow_null=True)
    uplift_points = serializers.FloatField(
        allow_null=True, help_text="Treated rate − control rate, in percentage points."
    )
    uplift_relative = serializers.FloatField(
        allow_null=True, help_text="(treated − control) / control, e.g. 0.25 = +25 %."
    )
    ci_low_points = serializers.FloatField(allow_null=True)
    ci_high_points = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    test = serializers.CharField(help_text='"chi2", "fisher" or "" (not enough data).')
    significant = serializers.BooleanField()
    alpha = serializers.FloatField()


class JourneyVariantOutput(serializers.Serializer):
    key = serializers.CharField()
    weight = serializers.IntegerField(allow_null=True)
    goto = serializers.CharField(allow_null=True)
    entered = serializers.IntegerField(help_text="Enrollments that took this variant.")
    converted = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True)
    conversions_attributed = serializers.IntegerField(
        help_text="Conversions credited to messages of the steps after this variant."
    )
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True)
    comparison = ComparisonOutput(
        allow_null=True, help_text="This variant (treated) against the first (control)."
    )


class JourneySplitOutput(serializers.Serializer):
    step = serializers.CharField()
    baseline = serializers.CharField(allow_null=True)
    variants = JourneyVariantOutput(many=True)


class JourneyExperimentOutput(serializers.Serializer):
    journey = serializers.CharField()
    journey_id = serializers.IntegerField()
    version = serializers.IntegerField()
    holdout_percent = serializers.IntegerField()
    conversion_events = serializers.ListField(child=serializers.CharField())
    conversion_window_hours = serializers.IntegerField()
    entered_from = serializers.DateTimeField()
    entered_to = serializers.DateTimeField()
    holdout = ComparisonOutput(help_text="Treated (not held out) against control (held out).")
    splits = JourneySplitOutput(many=True)


class JourneyExperimentView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(
        responses=JourneyExperimentOutput,
        parameters=[
            OpenApiParameter(
                "from", dt.date, description="First day of entry (default: 89 days ago)."
            ),
            OpenApiParameter(
                "to", dt.date, description="Last day of entry, included (default: today)."
            ),
        ],
        summary="A journey's experiment: holdout and split variants, with significance",
        description="Enrollments that entered the journey (every version of its slug) in "
        "the date range: treated vs held-out control, and each A/B split variant against the "
        "first, counting a contact as converted when one of the journey's conversion events "
        "(else its goal event) happened within the conversion window after entry.",
    )
    def get(self, request: Request, slug: str) -> Response:
        journey = current_journey(slug)
        try:
            _, _, start, end = entry_range(request.query_params)
        except RangeError as exc:
            raise exceptions.ValidationError(exc.errors) from None
        return Response(journey_experiment(journey=journey, start=start, end=end))
