"""Broadcasts API: CRUD by slug (drafts only), scopes, field-level 400s, dry run, report."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audiences.services import static_segment_add
from campaigns.models import Broadcast
from messaging.models import ApiKey, Contact

from .ui_helpers import NOW, sms_subscriber, static_segment, templates

pytestmark = pytest.mark.django_db


def client_with(*scopes: str) -> APIClient:
    _, key = ApiKey.objects.create_key(name="s", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def _body(**extra):
    return {
        "name": "Black Friday",
        "slug": "black-friday",
        "segments": ["everyone"],
        "template_slug": "promo",
        "channel_order": ["sms", "email"],
        **extra,
    }


@pytest.fixture
def world():
    templates()
    contacts = [sms_subscriber() for _ in range(3)]
    return {"everyone": static_segment("everyone", contacts), "contacts": contacts}


def test_create_read_list_update_delete(api, world):
    response = api.post("/api/v1/broadcasts/", _body(send_mode="at"), format="json")
    assert response.status_code == 400
    assert "send_at" in _errors(response)

    response = api.post("/api/v1/broadcasts/", _body(), format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["status"] == "draft"
    assert created["segments"] == ["everyone"]
    assert created["template_channels"] == ["email", "sms"]
    assert api.get("/api/v1/broadcasts/").json()["results"][0]["slug"] == "black-friday"
    assert api.get("/api/v1/broadcasts/?status=draft").json()["results"]
    assert api.get("/api/v1/broadcasts/?status=nope").status_code == 400

    changed = api.patch(
        "/api/v1/broadcasts/black-friday/",
        {"throttle_per_minute": 60, "channel_order": ["email"]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["throttle_per_minute"] == 60
    assert Broadcast.objects.get().channel_order == ["email"]

    assert api.delete("/api/v1/broadcasts/black-friday/").status_code == 204
    assert not Broadcast.objects.exists()


def test_field_level_errors(api, world):
    cases = [
        (_body(segments=["missing"]), "segments"),
        (_body(template_slug="nothing"), "template_slug"),
        (_body(channel_order=["sms", "sms"]), "channel_order"),
        (_body(channel_order=["fax"]), "channel_order.0"),
        (_body(channel_order=["whatsapp"]), "channel_order"),  # the family has no WhatsApp
        (_body(exclude_segments=["everyone"]), "exclude_segments"),
        (_body(send_mode="local", local_send_time="10:00"), "local_send_date"),
        (_body(throttle_per_minute=0), "throttle_per_minute"),
        (_body(colour="red"), "colour"),
    ]
    for body, field in cases:
        response = api.post("/api/v1/broadcasts/", body, format="json")
        assert response.status_code == 400, (body, response.json())
        assert field in _errors(response), (field, response.json())
    api.post("/api/v1/broadcasts/", _body(), format="json")
    again = api.post("/api/v1/broadcasts/", _body(), format="json")
    assert "slug" in _errors(again)
    assert Broadcast.objects.count() == 1


def test_a_launched_broadcast_cannot_be_changed_or_deleted(api, world):
    api.post("/api/v1/broadcasts/", _body(), format="json")
    Broadcast.objects.update(status="sending")
    assert (
        api.patch("/api/v1/broadcasts/black-friday/", {"name": "x"}, format="json").status_code
        == 409
    )
    assert api.delete("/api/v1/broadcasts/black-friday/").status_code == 409
    assert Broadcast.objects.get().name == "Black Friday"


def test_dry_run_and_report(api, world):
    api.post("/api/v1/broadcasts/", _body(), format="json")
    dry = api.get("/api/v1/broadcasts/black-friday/dry-run/")
    assert dry.status_code == 200, dry.json()
    assert dry.json()["audience"] == 3
    report = api.get("/api/v1/broadcasts/black-friday/report/")
    assert report.status_code == 200, report.json()
    assert report.json()["totals"]["recipients"] == 0
    assert report.json()["activity"]["hours"] == []


def test_scopes(world):
    reader, writer = client_with("broadcasts:read"), client_with("broadcasts:write")
    assert reader.post("/api/v1/broadcasts/", _body(), format="json").status_code == 403
    assert writer.get("/api/v1/broadcasts/").status_code == 403
    assert writer.post("/api/v1/broadcasts/", _body(), format="json").status_code == 201
    assert reader.get("/api/v1/broadcasts/black-friday/dry-run/").status_code == 200
    assert reader.post("/api/v1/broadcasts/black-friday/launch/").status_code == 403
    assert writer.get("/api/v1/broadcasts/black-friday/report/").status_code == 403
    assert Broadcast.objects.get().status == "draft"


def test_launch_pause_resume_cancel(api, world, django_capture_on_commit_callbacks):
    from audit.models import AuditEntry
    from campaigns.models import BroadcastRecipient

    api.post(
        "/api/v1/broadcasts/",
        _body(send_mode="at", send_at="2099-01-01T10:00:00Z"),
        format="json",
    )
    launched = api.post("/api/v1/broadcasts/black-friday/launch/")
    assert launched.status_code == 200, launched.json()
    assert launched.json()["status"] == "scheduled"
    assert launched.json()["recipient_count"] == 3
    assert BroadcastRecipient.objects.count() == 3
    again = api.post("/api/v1/broadcasts/black-friday/launch/")
    assert again.status_code == 400
    assert "status" in _errors(again)
    assert BroadcastRecipient.objects.count() == 3
    newcomer = sms_subscriber()
    static_segment_add(
        segment=world["everyone"], contacts=Contact.objects.filter(pk=newcomer.pk), now=NOW
    )
    assert api.post("/api/v1/broadcasts/black-friday/launch/").status_code == 400
    assert BroadcastRecipient.objects.count() == 3  # a second launch freezes nobody new

    assert api.post("/api/v1/broadcasts/black-friday/resume/").status_code == 400
    assert api.post("/api/v1/broadcasts/black-friday/pause/").json()["status"] == "paused"
    assert api.post("/api/v1/broadcasts/black-friday/resume/").json()["status"] == "scheduled"
    assert api.post("/api/v1/broadcasts/black-friday/cancel/").json()["status"] == "cancelled"
    assert set(BroadcastRecipient.objects.values_list("state", flat=True)) == {"cancelled"}
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"launch", "pause", "resume", "cancel"} <= actions


def test_launch_refusals_are_field_level(api, world):
    past = _body(send_mode="at", send_at="2001-01-01T10:00:00Z")
    refused = api.post("/api/v1/broadcasts/", past, format="json")
    assert refused.status_code == 400  # said when saving, not only at launch
    assert "send_at" in _errors(refused)
    api.post(
        "/api/v1/broadcasts/", _body(send_mode="at", send_at="2099-01-01T10:00:00Z"), format="json"
    )
    Broadcast.objects.update(send_at="2001-01-01T10:00:00Z")  # time passed since it was saved
    response = api.post("/api/v1/broadcasts/black-friday/launch/")
    assert response.status_code == 400
    assert "send_at" in _errors(response)
    assert Broadcast.objects.get().status == "draft"
    assert (
        api.post("/api/v1/broadcasts/black-friday/launch/", {"x": 1}, format="json").status_code
        == 400
    )


def test_the_draft_writer_itself_refuses_a_launched_broadcast(world):
    from campaigns import drafts
    from campaigns.errors import BroadcastError

    b = drafts.broadcast_create(
        values={"name": "B", "slug": "b", "template_slug": "promo"}, segments=[world["everyone"]]
    )
    Broadcast.objects.filter(pk=b.pk).update(status="scheduled")
    with pytest.raises(BroadcastError) as refused:
        drafts.broadcast_update(broadcast=b, values={"name": "Changed"}, segments=[])
    assert "only a draft" in refused.value.errors[""][0]
    with pytest.raises(BroadcastError):
        drafts.broadcast_delete(broadcast=b)
    assert Broadcast.objects.get(pk=b.pk).name == "B"


def test_the_list_reads_a_fixed_number_of_queries(api, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def measure() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get("/api/v1/broadcasts/").status_code == 200
        return len(ctx.captured_queries)

    api.post("/api/v1/broadcasts/", _body(), format="json")
    one = measure()
    for n in range(4):
        api.post("/api/v1/broadcasts/", _body(slug=f"more-{n}"), format="json")
    assert measure() == one
    listed = api.get("/api/v1/broadcasts/").json()["results"]
    assert {tuple(b["template_channels"]) for b in listed} == {("email", "sms")}


def test_api_writes_are_audited_under_the_key(api, world):
    from audit.models import AuditEntry

    assert api.post("/api/v1/broadcasts/", _body(), format="json").status_code == 201
    assert (
        api.patch(
            "/api/v1/broadcasts/black-friday/", {"name": "Cyber Monday"}, format="json"
        ).status_code
        == 200
    )
    assert api.delete("/api/v1/broadcasts/black-friday/").status_code == 204
    entries = AuditEntry.objects.filter(
        object_type="campaigns.broadcast", actor_kind="api_key"
    ).order_by("pk")
    assert [e.action for e in entries] == ["create", "change", "delete"]
