"""Reports API under /api/v1/ (see api.py)."""

from django.urls import path

from . import api

urlpatterns = [
    path("reports/channels/", api.ChannelsReportView.as_view(), name="api-report-channels"),
    path("reports/templates/", api.TemplatesReportView.as_view(), name="api-report-templates"),
    path("reports/broadcasts/", api.BroadcastsReportView.as_view(), name="api-report-broadcasts"),
    path(
        "reports/journeys/<slug:slug>/", api.JourneyReportView.as_view(), name="api-report-journey"
    ),
    path("reports/links/", api.LinksReportView.as_view(), name="api-report-links"),
]
