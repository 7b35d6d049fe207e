"""A transactional broadcast skips the marketing consent rules (an SMS opt-in), quiet hours
and the frequency cap, so launching one is a permission of its own
(`campaigns.send_transactional_broadcast`, held by no group; API scope
`broadcasts:transactional`), checked where the launch happens; a refusal freezes and sends
nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditEntry
from campaigns.models import Broadcast, BroadcastRecipient

from .test_admin_broadcasts import audience, marketer  # noqa: F401 (fixtures)
from .test_api_broadcasts import client_with, world  # noqa: F401 (fixtures)
from .ui_helpers import broadcast

pytestmark = pytest.mark.django_db


def _launch(client, b):
    return client.post(
        reverse("admin:campaigns_broadcast_launch", args=[b.pk]), {"confirm_name": b.name}
    )


def test_marketing_cannot_launch_a_transactional_broadcast_in_the_admin(
    client,
    marketer,  # noqa: F811
    audience,  # noqa: F811
):
    b = broadcast([audience], category="transactional")
    _launch(client, b)
    b.refresh_from_db()
    assert b.status == "draft"
    assert not BroadcastRecipient.objects.exists()
    assert not AuditEntry.objects.filter(action="launch").exists()
    marketer.user_permissions.add(Permission.objects.get(codename="send_transactional_broadcast"))
    marketing_only = broadcast([audience], slug="promo-two")  # marketing needs nothing more
    _launch(client, marketing_only)
    _launch(client, Broadcast.objects.get(pk=b.pk))
    assert set(Broadcast.objects.values_list("status", flat=True)) == {"sending"}


def test_the_api_needs_the_transactional_scope(world):  # noqa: F811
    writer = client_with("broadcasts:read", "broadcasts:write")
    created = writer.post(
        "/api/v1/broadcasts/",
        {
            "name": "Outage",
            "slug": "outage",
            "segments": ["everyone"],
            "template_slug": "promo",
            "channel_order": ["sms"],
            "category": "transactional",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    refused = writer.post("/api/v1/broadcasts/outage/launch/", {}, format="json")
    assert refused.status_code == 403
    assert "broadcasts:transactional" in refused.json()["errors"][0]["detail"]
    assert Broadcast.objects.get(slug="outage").status == "draft"
    assert not BroadcastRecipient.objects.exists()
    allowed = client_with("broadcasts:write", "broadcasts:transactional")
    assert allowed.post("/api/v1/broadcasts/outage/launch/", {}, format="json").status_code == 200
    assert BroadcastRecipient.objects.count() == 3
