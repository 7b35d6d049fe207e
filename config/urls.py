from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from messaging.health import healthz

urlpatterns = [
    # Staff tools (previews, dry runs, inbox, dashboards) under the admin, before its catch-all.
    path("admin/touchline/", include("messaging.staff_urls")),
    path("admin/touchline/", include("messaging.inbox_urls")),
    path("admin/touchline/", include("journeys.staff_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("messaging.urls")),
    path("api/v1/", include("journeys.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("healthz", healthz, name="healthz"),
    path("", include("channels_app.urls")),
]
