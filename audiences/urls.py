from django.urls import path

from . import api

urlpatterns = [
    path("segments/", api.SegmentListView.as_view(), name="api-segments"),
    path("segments/<slug:slug>/", api.SegmentDetailView.as_view(), name="api-segment"),
    path("segments/<slug:slug>/count/", api.SegmentCountView.as_view(), name="api-segment-count"),
    path(
        "segments/<slug:slug>/members/",
        api.SegmentMembersView.as_view(),
        name="api-segment-members",
    ),
]
