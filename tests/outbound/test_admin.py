"""Admin: the secret is shown once on creation, re-enabling, read-only deliveries."""

from __future__ import annotations

import pytest

from outbound import services
from outbound.models import WebhookSubscription

pytestmark = pytest.mark.django_db


def test_creating_a_subscription_shows_its_secret_once(admin_client):
    response = admin_client.post(
        "/admin/outbound/webhooksubscription/add/",
        {
            "url": "https://crm.example.com/hooks",
            "description": "CRM",
            "event_types": ["message.replied", "survey.answered"],
            "is_active": "on",
        },
        follow=True,
    )

    assert response.redirect_chain, response.content
    subscription = WebhookSubscription.objects.get()
    assert subscription.event_types == ["message.replied", "survey.answered"]
    assert subscription.secret.startswith("whsec_")
    assert subscription.secret in response.content.decode()  # the page after saving
    page = admin_client.get(f"/admin/outbound/webhooksubscription/{subscription.pk}/change/")
    assert page.status_code == 200
    assert subscription.secret not in page.content.decode()  # and never again


def test_bad_url_and_event_type_are_form_errors(admin_client):
    response = admin_client.post(
        "/admin/outbound/webhooksubscription/add/",
        {"url": "ftp://x.example/", "event_types": ["nope"]},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"url", "event_types"}
    assert not WebhookSubscription.objects.exists()


def test_reenable_action_and_pages(admin_client):
    subscription = services.subscription_create(
        url="https://crm.example.com/hooks", event_types=["message.sent"]
    )
    services.subscription_disable(subscription_id=subscription.pk, reason="disabled after 15 …")
    delivery = services.ping_send(subscription=subscription)

    listing = admin_client.get("/admin/outbound/webhooksubscription/")
    assert "disabled after 15" in listing.content.decode()
    admin_client.post(
        "/admin/outbound/webhooksubscription/",
        {"action": "reenable", "_selected_action": [subscription.pk]},
    )
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.disabled_reason) == (True, "")

    assert admin_client.get("/admin/outbound/webhookdelivery/").status_code == 200
    page = admin_client.get(f"/admin/outbound/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert "webhook.test" in page.content.decode()
