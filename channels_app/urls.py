"""Provider webhooks, mounted at the site root (trailing slashes: SendGrid won't redirect)."""

from django.urls import path

from .webhooks.sendgrid import SendGridEventsView, SendGridInboundView
from .webhooks.twilio import TwilioInboundView, TwilioStatusView

urlpatterns = [
    path("webhooks/twilio/status/", TwilioStatusView.as_view(), name="webhook-twilio-status"),
    path("webhooks/twilio/inbound/", TwilioInboundView.as_view(), name="webhook-twilio-inbound"),
    path("webhooks/sendgrid/events/", SendGridEventsView.as_view(), name="webhook-sendgrid-events"),
    path(
        "webhooks/sendgrid/inbound/",
        SendGridInboundView.as_view(),
        name="webhook-sendgrid-inbound",
    ),
]
