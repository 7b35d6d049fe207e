"""The journey map's staff URLs, mounted under /admin/touchline/ (see map_views.py)."""

from django.urls import path

from . import map_views

urlpatterns = [
    path("journeys/<int:pk>/map/", map_views.journey_map_page, name="touchline-journey-map"),
    path(
        "journeys/<int:pk>/map/data/",
        map_views.journey_map_data,
        name="touchline-journey-map-data",
    ),
]
