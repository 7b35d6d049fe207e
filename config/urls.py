from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from messaging.health import healthz
from messaging.landing import landing
from messaging.link_views import link_redirect
from messaging.preference_views import preference_center
from messaging.unsubscribe_views import one_click_unsubscribe

urlpatterns = [
    # Staff tools (previews, dry runs, inbox, dashboards) under the admin, before its catch-all.
    path("admin/touchline/", include("messaging.staff_urls")),
    path("admin/touchline/", include("messaging.inbox_urls")),
    path("admin/touchline/", include("journeys.staff_urls")),
    path("admin/touchline/", include("insights.urls_staff")),
    path("admin/touchline/", include("insights.map_urls")),
    path("admin/touchline/", include("insights.experiment_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("messaging.urls")),
    path("api/v1/", include("audiences.urls")),
    path("api/v1/", include("campaigns.urls")),
    path("api/v1/", include("journeys.urls")),
    path("api/v1/", include("insights.experiment_api_urls")),
    path("api/v1/", include("outbound.urls")),
    path("api/v1/", include("insights.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("healthz", healthz, name="healthz"),
    # RFC 8058 one-click unsubscribe (List-Unsubscribe of marketing email): signed, no login.
    path("u/<str:token>", one_click_unsubscribe, name="one-click-unsubscribe"),
    path("l/<str:token>", link_redirect, name="link-redirect"),
    # The hosted preference center: signed per-contact link, no login, CSRF-protected form.
    path("preferences/<str:token>", preference_center, name="preference-center"),
    path("", landing, name="landing"),
    path("", include("channels_app.urls")),
]
