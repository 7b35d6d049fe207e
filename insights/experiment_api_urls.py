"""Journey experiment results in the API (mounted under /api/v1/)."""

from django.urls import path

from . import experiment_views

urlpatterns = [
    path(
        "journeys/<slug:slug>/experiment/",
        experiment_views.JourneyExperimentView.as_view(),
        name="api-journey-experiment",
    ),
]
