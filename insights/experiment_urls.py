"""Journey experiment results: the staff page (mounted under /admin/touchline/)."""

from django.urls import path

from . import experiment_views

urlpatterns = [
    path(
        "journeys/<int:pk>/experiment/",
        experiment_views.journey_experiment_page,
        name="touchline-journey-experiment",
    ),
]
