from django.urls import path

from . import api

urlpatterns = [
    path("webhooks/", api.WebhookListCreateView.as_view(), name="api-webhooks"),
    path("webhooks/<int:subscription_id>/", api.WebhookDetailView.as_view(), name="api-webhook"),
    path(
        "webhooks/<int:subscription_id>/deliveries/",
        api.WebhookDeliveriesView.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/<int:subscription_id>/test/",
        api.WebhookTestView.as_view(),
        name="api-webhook-test",
    ),
]
