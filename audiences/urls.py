from django.urls import path

from . import api, import_api

urlpatterns = [
    path("segments/", api.SegmentListView.as_view(), name="api-segments"),
    path("segments/<slug:slug>/", api.SegmentDetailView.as_view(), name="api-segment"),
    path("segments/<slug:slug>/count/", api.SegmentCountView.as_view(), name="api-segment-count"),
    path(
        "segments/<slug:slug>/members/",
        api.SegmentMembersView.as_view(),
        name="api-segment-members",
    ),
    path(
        "segments/<slug:slug>/export/",
        import_api.SegmentExportView.as_view(),
        name="api-segment-export",
    ),
    path("imports/", import_api.ImportListView.as_view(), name="api-imports"),
    path("imports/<int:pk>/", import_api.ImportDetailView.as_view(), name="api-import"),
    path(
        "imports/<int:pk>/validate/",
        import_api.ImportValidateView.as_view(),
        name="api-import-validate",
    ),
    path("imports/<int:pk>/run/", import_api.ImportRunView.as_view(), name="api-import-run"),
    path(
        "imports/<int:pk>/errors/", import_api.ImportErrorsView.as_view(), name="api-import-errors"
    ),
]
