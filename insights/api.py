"""Reports over the API: `GET /api/v1/reports/{channels,templates,broadcasts,links}/` and
`/reports/journeys/<slug>/`, JSON or CSV (`?format=csv` or `Accept: text/csv`). Scope
`reports:read`. Bad query parameters → 400 with field errors. A CSV download is audited."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import exceptions, serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import Target, audit_record
from journeys.models import Journey

from .reports import COUNTS, RATES
from .reports_csv import report_csv_response
from .reports_params import REPORTS, ReportQuery, report_build

SCOPE = "reports:read"


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` and `Accept: text/csv` through content negotiation; the view
    answers with a streamed CSV response itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        # Only errors reach a renderer on the CSV path: give them as plain text.
        return str(data).encode()


def _funnel_fields() -> dict[str, serializers.Field]:
    return {
        **{name: serializers.IntegerField() for name in COUNTS},
        **{name: serializers.FloatField(allow_null=True) for name in RATES},
        "revenue": serializers.DictField(child=serializers.CharField(), help_text="per currency"),
    }


ReportFunnelTotals = type("ReportFunnelTotals", (serializers.Serializer,), _funnel_fields())
ReportFunnelRow = type(
    "ReportFunnelRow",
    (serializers.Serializer,),
    {
        **{
            key: serializers.CharField(required=False)
            for key in ("journey", "step", "broadcast", "name", "template", "template_channel")
        },
        "channel": serializers.CharField(required=False),
        **_funnel_fields(),
    },
)


class ReportPeriod(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()


class _ReportOutput(serializers.Serializer):
    report = serializers.CharField()
    period = ReportPeriod()
    scope = serializers.DictField(child=serializers.CharField())
    sources = serializers.DictField(
        child=serializers.CharField(), help_text="What each headline number counts."
    )


class ReportFunnel(_ReportOutput):
    rows = ReportFunnelRow(many=True)
    totals = ReportFunnelTotals()


class ReportJourneyStep(serializers.Serializer):
    step = serializers.CharField()
    kind = serializers.CharField()
    position = serializers.IntegerField()
    entered = serializers.IntegerField()
    lost = serializers.IntegerField(allow_null=True)
    lost_share = serializers.FloatField(allow_null=True)


class ReportJourney(ReportFunnel):
    steps = ReportJourneyStep(many=True)


class ReportLinkRow(serializers.Serializer):
    url = serializers.CharField()
    channel = serializers.CharField()
    messages = serializers.IntegerField()
    clicks = serializers.IntegerField()
    unique_clickers = serializers.IntegerField()
    messages_clicked = serializers.IntegerField()
    click_rate = serializers.FloatField(allow_null=True)
    bot_clicks = serializers.IntegerField()


class ReportLinks(_ReportOutput):
    rows = ReportLinkRow(many=True)


def _params(*names: str) -> list[OpenApiParameter]:
    about = {
        "start": "First day (YYYY-MM-DD, UTC); default 29 days before the end.",
        "end": "Last day, included (YYYY-MM-DD, UTC); default today. At most 366 days.",
        "journey": "Only messages of this journey (slug, every version).",
        "broadcast": "Only messages of this broadcast (slug).",
        "template": "Only messages of this template (slug).",
        "channel": "Only this channel (sms, whatsapp, email).",
    }
    return [
        *(OpenApiParameter(n, OpenApiTypes.STR, description=about[n]) for n in names),
        OpenApiParameter(
            "format",
            OpenApiTypes.STR,
            enum=["json", "csv"],
            description="csv: the report as CSV (streamed, with a header row).",
        ),
    ]


class _ReportView(APIView):
    required_scopes = {"GET": SCOPE}
    renderer_classes = [JSONRenderer, CSVRenderer]
    report = ""

    def _respond(self, request: Request, extra: dict[str, str] | None = None) -> Any:
        data = {k: v for k, v in request.query_params.items() if k != "format"}
        query = ReportQuery({**data, **(extra or {})}, report=self.report)
        if not query.is_valid():
            raise exceptions.ValidationError(
                {field: [str(e) for e in errors] for field, errors in query.errors.items()}
            )
        result = report_build(report=self.report, query=query)
        if getattr(request.accepted_renderer, "format", "") == "csv":
            audit_record(
                actor=None,
                action="export",
                target=Target("insights.report", self.report, f"{REPORTS[self.report]} (CSV)"),
                request=request,
                details={"period": result["period"], "scope": result["scope"]},
            )
            return report_csv_response(report=result, name=self.report)
        return Response(result)


_CSV = (200, "text/csv")
_DESCRIPTION = (
    "Outbound messages made in the date range (UTC days, both included) and everything that "
    "happened to them: sent, delivered, failed, bounced, opened, clicked, replied, engaged, "
    "converted (messages with an attributed conversion), conversions, revenue per currency, "
    "unsubscribed, complained, per-source counts and rates. Definitions: docs/REPORTS.md."
)


def _funnel_view(report: str, by: str) -> type[_ReportView]:
    class View(_ReportView):
        @extend_schema(
            parameters=_params("start", "end", "journey", "broadcast", "template", "channel"),
            responses={200: ReportFunnel, _CSV: OpenApiResponse(OpenApiTypes.STR)},
            summary=f"Funnel per {by}",
            description=_DESCRIPTION,
        )
        def get(self, request: Request) -> Any:
            return self._respond(request)

    View.report = report
    View.__name__ = View.__qualname__ = f"{report.capitalize()}ReportView"
    return View


ChannelsReportView = _funnel_view("channels", "channel")
TemplatesReportView = _funnel_view("templates", "template")
BroadcastsReportView = _funnel_view("broadcasts", "broadcast")


class JourneyReportView(_ReportView):
    report = "journeys"

    @extend_schema(
        parameters=_params("start", "end"),
        responses={
            200: ReportJourney,
            _CSV: OpenApiResponse(OpenApiTypes.STR),
            404: OpenApiResponse(description="No journey with this slug."),
        },
        summary="A journey's funnel per step, with drop-off",
        description=_DESCRIPTION + " Steps: enrollments entering each step in the range and "
        "the share of the previous step's lost.",
    )
    def get(self, request: Request, slug: str) -> Any:
        if not Journey.objects.filter(slug=slug).exists():
            raise exceptions.NotFound(f"There is no journey {slug!r}.")
        return self._respond(request, {"journey": slug})


class LinksReportView(_ReportView):
    report = "links"

    @extend_schema(
        parameters=_params("start", "end", "journey", "broadcast", "template", "channel"),
        responses={200: ReportLinks, _CSV: OpenApiResponse(OpenApiTypes.STR)},
        summary="Clicks per tracked link",
        description="Per original URL and channel, for a journey, a broadcast or a template "
        "(one is required): messages that carried the link, people's clicks, unique clickers, "
        "bot clicks apart.",
    )
    def get(self, request: Request) -> Any:
        return self._respond(request)
