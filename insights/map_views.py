"""Staff-only journey map under /admin/touchline/: the page (drawn in the browser by
insights/static/insights/journey_map.js) and its JSON (insights/journey_map.py).

Whoever may view a journey's dashboard (`journeys.view_journey`) may view its map.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from journeys.models import Journey

from .journey_map import MapRangeForm, journey_map

PERMISSION = "journeys.view_journey"


@staff_member_required
@require_GET
def journey_map_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The journey as a graph with counts per step for a date range."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    journey = get_object_or_404(Journey, pk=pk)
    form = MapRangeForm(request.GET)
    if not form.is_valid():  # the page opens on the default range; the JSON says what is wrong
        form = MapRangeForm({})
        form.is_valid()
    dates = form.cleaned_data
    context = {
        **admin.site.each_context(request),
        "title": f"{journey.name}: journey map",
        "opts": Journey._meta,
        "original": journey,
        "data_url": reverse("touchline-journey-map-data", args=[journey.pk]),
        "dashboard_url": reverse("touchline-journey-dashboard", args=[journey.pk]),
        "start": dates["start"].isoformat(),
        "end": dates["end"].isoformat(),
    }
    return render(request, "admin/insights/journey_map.html", context)


@staff_member_required
@require_GET
def journey_map_data(request: HttpRequest, pk: int) -> JsonResponse:
    """The map's JSON; `start` and `end` (YYYY-MM-DD, inclusive, default the last 30 days)."""
    if not request.user.has_perm(PERMISSION):
        return JsonResponse({"errors": {"__all__": ["You cannot view journeys."]}}, status=403)
    journey = Journey.objects.filter(pk=pk).first()
    if journey is None:
        return JsonResponse({"errors": {"__all__": [f"There is no journey {pk}."]}}, status=404)
    form = MapRangeForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    data = journey_map(journey, start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    return JsonResponse(data)
