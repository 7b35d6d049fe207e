from django.urls import path

from . import api

urlpatterns = [
    path("broadcasts/", api.BroadcastListView.as_view(), name="api-broadcasts"),
    path("broadcasts/<slug:slug>/", api.BroadcastDetailView.as_view(), name="api-broadcast"),
    path(
        "broadcasts/<slug:slug>/launch/",
        api.BroadcastLaunchView.as_view(),
        name="api-broadcast-launch",
    ),
    path(
        "broadcasts/<slug:slug>/pause/",
        api.BroadcastPauseView.as_view(),
        name="api-broadcast-pause",
    ),
    path(
        "broadcasts/<slug:slug>/resume/",
        api.BroadcastResumeView.as_view(),
        name="api-broadcast-resume",
    ),
    path(
        "broadcasts/<slug:slug>/cancel/",
        api.BroadcastCancelView.as_view(),
        name="api-broadcast-cancel",
    ),
    path(
        "broadcasts/<slug:slug>/dry-run/",
        api.BroadcastDryRunView.as_view(),
        name="api-broadcast-dry-run",
    ),
    path(
        "broadcasts/<slug:slug>/report/",
        api.BroadcastReportView.as_view(),
        name="api-broadcast-report",
    ),
]
