from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from messaging.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("messaging.urls")),
    path("api/v1/", include("journeys.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("healthz", healthz, name="healthz"),
    path("", include("channels_app.urls")),
]
