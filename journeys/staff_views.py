"""Staff-only pages and JSON under /admin/touchline/ for journeys.

Dashboards: `dashboard_data` (the admin home's charts), `journey_dashboard` (a page) and
`journey_dashboard_data` (its JSON). The figures come from journeys/dashboards.py.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import dashboards
from .models import Journey


def _bounded_int(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    """A positive integer query parameter, clamped; the default when absent or not a number."""
    try:
        value = int(request.GET.get(name, default))
    except (TypeError, ValueError):
        return default
    return max(1, min(value, maximum))


# --- Dashboards -----------------------------------------------------------------------


def _dashboard_url(journey_id: int) -> str:
    return reverse("touchline-journey-dashboard", args=[journey_id])


@staff_member_required
@require_GET
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The admin home's charts: message activity per day and channel, NPS, journey links."""
    if not request.user.has_perm("messaging.view_message"):
        return JsonResponse({"errors": {"__all__": ["You cannot view messages."]}}, status=403)
    days = _bounded_int(request, "days", 30, dashboards.MAX_DAYS)
    data = {"period_days": days, "activity": dashboards.message_activity(days=days)}
    if request.user.has_perm("journeys.view_journey"):
        nps = dashboards.nps_overview(days=days)
        for journey in nps["journeys"]:
            journey["dashboard_url"] = _dashboard_url(journey["id"])
        data["nps"] = nps
        data["journeys"] = [
            {**journey, "dashboard_url": _dashboard_url(journey["id"])}
            for journey in dashboards.journey_list()
        ]
    return JsonResponse(data)


@staff_member_required
@require_GET
def journey_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    """One journey's funnel, delivery and reply rates per channel, and NPS by week."""
    if not request.user.has_perm("journeys.view_journey"):
        raise PermissionDenied
    journey = get_object_or_404(Journey, pk=pk)
    context = {
        **admin.site.each_context(request),
        "title": f"{journey.name}: dashboard",
        "opts": Journey._meta,
        "original": journey,
        "data_url": reverse("touchline-journey-dashboard-data", args=[journey.pk]),
    }
    return render(request, "admin/journeys/journey/dashboard.html", context)


@staff_member_required
@require_GET
def journey_dashboard_data(request: HttpRequest, pk: int) -> JsonResponse:
    """The figures `journey_dashboard` draws; `weeks` (default 12) for NPS by week."""
    if not request.user.has_perm("journeys.view_journey"):
        return JsonResponse({"errors": {"__all__": ["You cannot view journeys."]}}, status=403)
    journey = Journey.objects.filter(pk=pk).first()
    if journey is None:
        return JsonResponse({"errors": {"__all__": [f"There is no journey {pk}."]}}, status=404)
    weeks = _bounded_int(request, "weeks", 12, dashboards.MAX_WEEKS)
    return JsonResponse(dashboards.journey_dashboard(journey, weeks=weeks))
