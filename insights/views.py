"""The staff "Reports" page under /admin/touchline/reports/: one tab per report, a date range
form, and a CSV download of what is shown. Needs `insights.view_reports` (Marketing and
Viewer hold it). Reading is not audited; a CSV download is (as every export is)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from audit.services import Target, audit_record
from campaigns.models import Broadcast
from messaging.models import Template

from .reports import SOURCES, journey_slugs
from .reports_csv import report_csv_response, report_table
from .reports_params import REPORTS, ReportQuery, report_build

PERMISSION = "insights.view_reports"


def _query(request: HttpRequest, report: str) -> ReportQuery:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if report not in REPORTS:
        raise Http404("No such report.")
    return ReportQuery(request.GET, report=report)


@staff_member_required
@require_GET
def reports_page(request: HttpRequest, report: str = "channels") -> HttpResponse:
    """One report as tables; 400 with the form's errors for a bad query."""
    query = _query(request, report)
    valid = query.is_valid()
    params = {k: v for k, v in request.GET.items() if k in query.fields and v}
    context = {
        **admin.site.each_context(request),
        "title": f"Reports: {REPORTS[report]}",
        "report_name": report,
        "tabs": [
            (key, label, reverse("touchline-reports", args=[key]) + _qs(params))
            for key, label in REPORTS.items()
        ],
        "form": query,
        "journeys": journey_slugs(),
        "broadcasts": Broadcast.objects.order_by("slug").values_list("slug", flat=True),
        "templates": Template.objects.order_by("slug").values_list("slug", flat=True).distinct(),
        "sources": SOURCES,
    }
    if valid:
        report_data = report_build(report=report, query=query)
        header, rows = report_table(report_data)
        context |= {
            "report": report_data,
            "header": header,
            "rows": rows,
            "csv_url": reverse("touchline-reports-csv", args=[report]) + _qs(params),
        }
    # Opening the journey or link tab before choosing what to report on is not a bad query.
    choosing = (
        not valid
        and set(query.errors) == {"journey"}
        and not any(request.GET.get(k) for k in ("journey", "broadcast", "template"))
    )
    context["choosing"] = choosing
    response = render(request, "admin/insights/reports.html", context)
    if not valid and not choosing:
        response.status_code = 400
    return response


def _qs(params: dict[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


@staff_member_required
@require_GET
def reports_csv(request: HttpRequest, report: str) -> HttpResponse:
    """The report as CSV (audited as an export); 400 with the errors for a bad query."""
    query = _query(request, report)
    if not query.is_valid():
        return HttpResponse(
            query.errors.as_text(), status=400, content_type="text/plain; charset=utf-8"
        )
    data = report_build(report=report, query=query)
    audit_record(
        actor=request.user,
        action="export",
        target=Target("insights.report", report, f"{REPORTS[report]} report (CSV)"),
        request=request,
        details={"period": data["period"], "scope": data["scope"]},
    )
    return report_csv_response(report=data, name=report)
