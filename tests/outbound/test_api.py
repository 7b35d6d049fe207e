"""The webhook subscriptions API: CRUD, the secret shown once, re-enabling, deliveries with
attempts, the test ping, scopes and field-level errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from messaging.models import ApiKey
from outbound.models import WebhookDelivery, WebhookSubscription

from .conftest import spec_verify

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/"


def attrs(response) -> dict[str, str]:
    body = response.json()
    assert body["type"] == "validation_error", body
    return {e["attr"]: e["code"] for e in body["errors"]}


@pytest.fixture
def created(api, receiver):
    response = api.post(
        URL,
        {
            "url": receiver.url,
            "description": "CRM sync",
            "event_types": ["message.replied", "contact.unsubscribed"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_create_returns_the_secret_once_and_list_and_read_never_do(api, created, api_key):
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["message.replied", "contact.unsubscribed"]
    assert (created["is_active"], created["disabled_reason"]) == (True, "")
    subscription = WebhookSubscription.objects.get(pk=created["id"])
    assert subscription.secret == created["secret"]
    assert subscription.created_by_key == ApiKey.objects.get_from_key(api_key)

    listed = api.get(URL).json()
    read = api.get(f"{URL}{created['id']}/").json()

    assert [s["id"] for s in listed["results"]] == [created["id"]]
    assert "next" in listed
    assert "secret" not in listed["results"][0]
    assert "secret" not in read
    assert read["url"] == created["url"]


def test_list_is_cursor_paginated_newest_first(api):
    ids = [
        WebhookSubscription.objects.create(
            url=f"https://h{i}.example/x", event_types=["message.sent"]
        ).pk
        for i in range(3)
    ]
    first = api.get(URL, {"page_size": 2}).json()
    assert [s["id"] for s in first["results"]] == ids[::-1][:2]
    second = api.get(first["next"]).json()
    assert [s["id"] for s in second["results"]] == [ids[0]]
    assert second["next"] is None


def test_patch_changes_fields_and_re_enables_a_disabled_subscription(api, created):
    WebhookSubscription.objects.filter(pk=created["id"]).update(
        is_active=False,
        disabled_reason="disabled after 15 consecutive failed deliveries; last: HTTP 500",
        consecutive_failures=15,
    )
    assert api.get(f"{URL}{created['id']}/").json()["disabled_reason"].startswith("disabled after")

    response = api.patch(
        f"{URL}{created['id']}/",
        {"is_active": True, "event_types": ["survey.answered"], "description": "NPS"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["is_active"], body["disabled_reason"], body["disabled_at"]) == (True, "", None)
    assert body["consecutive_failures"] == 0
    assert (body["event_types"], body["description"]) == (["survey.answered"], "NPS")
    assert "secret" not in body


def test_patch_is_active_false_disables_and_stops_pending_deliveries(api, created):
    subscription = WebhookSubscription.objects.get(pk=created["id"])
    pending = WebhookDelivery.objects.create(
        subscription=subscription, event_type="message.replied", payload={}
    )

    response = api.patch(f"{URL}{created['id']}/", {"is_active": False}, format="json")

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert response.json()["disabled_reason"] == "disabled by a user"
    pending.refresh_from_db()
    assert pending.status == "failed"


def test_delete(api, created):
    assert api.delete(f"{URL}{created['id']}/").status_code == 204
    assert not WebhookSubscription.objects.exists()
    assert api.get(f"{URL}{created['id']}/").status_code == 404


def test_test_ping_is_delivered_signed_and_listed_with_its_attempts(
    api, created, receiver, django_capture_on_commit_callbacks
):
    receiver.respond(503)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{URL}{created['id']}/test/", {}, format="json")

    assert response.status_code == 202, response.content
    assert response.json()["event_type"] == "webhook.test"
    [request] = receiver.requests
    assert request.json["type"] == "webhook.test"
    assert spec_verify(secret=created["secret"], headers=request.headers, body=request.body)

    deliveries = api.get(f"{URL}{created['id']}/deliveries/").json()["results"]
    [delivery] = deliveries
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "pending",
        1,
        503,
    )
    assert delivery["webhook_id"] == request.headers["webhook-id"]
    [attempt] = delivery["attempt_log"]
    assert attempt["status_code"] == 503
    assert attempt["response_body"] == "answer 503"
    assert attempt["duration_ms"] >= 0
    failed = api.get(f"{URL}{created['id']}/deliveries/", {"status": "failed"}).json()
    assert failed["results"] == []
    bad = api.get(f"{URL}{created['id']}/deliveries/", {"status": "lost"})
    assert bad.status_code == 400 and "status" in attrs(bad)


def test_test_ping_to_a_disabled_subscription_is_a_conflict(api, created):
    api.patch(f"{URL}{created['id']}/", {"is_active": False}, format="json")
    response = api.post(f"{URL}{created['id']}/test/", {}, format="json")
    assert response.status_code == 409
    assert "re-enable" in response.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"url": "ftp://files.example.com/in", "event_types": ["message.sent"]}, {"url"}),
        ({"url": "javascript:alert(1)", "event_types": ["message.sent"]}, {"url"}),
        ({"url": "not a url", "event_types": ["message.sent"]}, {"url"}),
        (
            {"url": "https://ok.example/h", "event_types": ["message.sent", "message.opened"]},
            {"event_types.1"},
        ),
        ({"url": "https://ok.example/h", "event_types": []}, {"event_types"}),
        ({"url": "https://ok.example/h", "event_types": "message.sent"}, {"event_types"}),
        ({"event_types": ["message.sent"]}, {"url"}),
        (
            {"url": "https://ok.example/h", "event_types": ["message.sent"], "secret": "x"},
            {"secret"},
        ),
    ],
)
def test_bad_input_is_a_400_with_field_paths_and_nothing_stored(api, payload, expected):
    response = api.post(URL, payload, format="json")

    assert response.status_code == 400, response.content
    assert set(attrs(response)) == expected
    assert not WebhookSubscription.objects.exists()


def test_patch_rejects_unknown_fields_and_bad_values(api, created):
    unknown = api.patch(f"{URL}{created['id']}/", {"urll": "https://x.example"}, format="json")
    assert unknown.status_code == 400
    assert attrs(unknown) == {"urll": "unknown_field"}
    bad_type = api.patch(f"{URL}{created['id']}/", {"event_types": ["nope"]}, format="json")
    assert bad_type.status_code == 400
    assert set(attrs(bad_type)) == {"event_types.0"}
    assert WebhookSubscription.objects.get().event_types == [
        "message.replied",
        "contact.unsubscribed",
    ]


def test_unknown_subscription_is_404(api):
    assert api.get(f"{URL}999999/").status_code == 404
    assert api.get(f"{URL}999999/deliveries/").status_code == 404
    assert api.post(f"{URL}999999/test/", {}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}1/"),
        ("patch", f"{URL}1/"),
        ("delete", f"{URL}1/"),
        ("get", f"{URL}1/deliveries/"),
        ("post", f"{URL}1/test/"),
    ],
)
def test_every_endpoint_needs_the_webhooks_manage_scope(db, method, path):
    _, key = ApiKey.objects.create_key(name="reader", scopes=["messages:read", "contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    response = getattr(client, method)(path, {}, format="json")

    assert response.status_code == 403
    assert "webhooks:manage" in response.json()["errors"][0]["detail"]


def test_no_key_is_401(db):
    assert APIClient().get(URL).status_code == 401


def test_the_schema_documents_the_endpoints(api):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in (
        "/api/v1/webhooks/",
        "/api/v1/webhooks/{subscription_id}/",
        "/api/v1/webhooks/{subscription_id}/deliveries/",
        "/api/v1/webhooks/{subscription_id}/test/",
    ):
        assert path in schema["paths"]
    create = schema["paths"]["/api/v1/webhooks/"]["post"]
    assert "examples" in create["requestBody"]["content"]["application/json"]
