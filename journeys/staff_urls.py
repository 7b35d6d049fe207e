"""Staff-only pages and JSON endpoints under /admin/touchline/ (see staff_views.py)."""

from django.urls import path

from . import staff_views

urlpatterns = [
    # Dashboards
    path("dashboard/data/", staff_views.dashboard_data, name="touchline-dashboard-data"),
    path(
        "journeys/<int:pk>/dashboard/",
        staff_views.journey_dashboard,
        name="touchline-journey-dashboard",
    ),
    path(
        "journeys/<int:pk>/dashboard/data/",
        staff_views.journey_dashboard_data,
        name="touchline-journey-dashboard-data",
    ),
]
