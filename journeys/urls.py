from django.urls import path

from . import api

urlpatterns = [
    path("events/", api.EventCreateView.as_view(), name="api-events"),
    path("events/<int:pk>/", api.EventDetailView.as_view(), name="api-event"),
    path("events/batch/", api.EventBatchView.as_view(), name="api-events-batch"),
    path("journeys/", api.JourneyListView.as_view(), name="api-journeys"),
    path("journeys/<slug:slug>/", api.JourneyDetailView.as_view(), name="api-journey"),
    path("journeys/<slug:slug>/stats/", api.JourneyStatsView.as_view(), name="api-journey-stats"),
    path("survey-responses/", api.SurveyResponseListView.as_view(), name="api-survey-responses"),
]
