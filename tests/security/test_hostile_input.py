"""Hostile input gets a 400 with a field-level message on every endpoint, never a 500
(issue 12 item 4), and every /api/ path answers JSON (item 9)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from journeys.models import Event
from messaging.models import Contact

pytestmark = pytest.mark.django_db


def _raw(api, method: str, path: str, body: str, content_type: str = "application/json"):
    return getattr(api, method)(path, data=body, content_type=content_type)


def _errors(response) -> list[dict]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["errors"]


def test_deeply_nested_json_is_a_400_naming_the_depth_limit(api):
    body = "[" * 100_000 + "]" * 100_000
    response = _raw(api, "post", "/api/v1/events/", body)
    assert response.status_code == 400
    [error] = _errors(response)
    assert error["code"] == "parse_error"
    assert "nested" in error["detail"] and "32" in error["detail"]


def test_nesting_just_inside_the_limit_still_parses(api):
    deep: dict = {"leaf": 1}
    for _ in range(20):
        deep = {"k": deep}
    response = api.post(
        "/api/v1/events/",
        {"name": "order.completed", "contact": {"external_id": "n-1"}, "properties": deep},
        format="json",
    )
    assert response.status_code == 202, response.json()


@pytest.mark.parametrize(
    ("path", "body", "attr"),
    [
        # An attributes key with a NUL byte.
        (
            "/api/v1/contacts/nul-key/",
            '{"attributes": {"pl\\u0000an": "gold"}}',
            "attributes",
        ),
        # A lone surrogate in a value.
        ("/api/v1/contacts/lone/", '{"first_name": "Ada\\ud800"}', "first_name"),
        # A lone surrogate in a nested key.
        (
            "/api/v1/events/",
            '{"name": "x", "contact": {"external_id": "e"}, "properties": {"\\udc00": 1}}',
            "properties",
        ),
        # A NUL in a value nested in a list.
        (
            "/api/v1/events/",
            '{"name": "x", "contact": {"external_id": "e"}, '
            '"properties": {"a": ["ok", "b\\u0000"]}}',
            "properties.a.1",
        ),
    ],
)
def test_nul_and_lone_surrogates_in_json_are_a_field_level_400(api, path, body, attr):
    method = "put" if "contacts" in path else "post"
    response = _raw(api, method, path, body)
    assert response.status_code == 400, response.content[:300]
    [error] = _errors(response)
    assert error["attr"] == attr
    assert "NUL" in error["detail"] or "surrogate" in error["detail"].lower()
    assert not Contact.objects.exists()


def _event(number: str, contact_extra: str = "") -> str:
    return (
        f'{{"name": "x", "contact": {{"external_id": "e"{contact_extra}}}, '
        f'"properties": {{"a": {number}}}}}'
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "attr"),
    [
        ("put", "/api/v1/contacts/inf1/", '{"attributes": {"a": 1e999}}', "attributes.a"),
        ("put", "/api/v1/contacts/inf2/", '{"attributes": {"a": [1, -1e999]}}', "attributes.a.1"),
        ("post", "/api/v1/events/", _event("1e400"), "properties.a"),
        (
            "post",
            "/api/v1/events/",
            _event("1", ', "attributes": {"b": {"c": -1e999}}'),
            "contact.attributes.b.c",
        ),
        # One bad item in a batch: the whole batch is refused, naming the item.
        (
            "post",
            "/api/v1/events/batch/",
            f'{{"events": [{_event("1")}, {_event("1e999")}]}}',
            "events.1.properties.a",
        ),
    ],
    ids=["contact-attribute", "in-a-list", "event-property", "event-contact", "batch"],
)
def test_numbers_that_are_not_finite_are_a_field_level_400(api, method, path, body, attr):
    # Python's JSON decoder makes 1e999 an infinite float, which JSONB cannot hold.
    response = _raw(api, method, path, body)
    assert response.status_code == 400, response.content[:300]
    [error] = _errors(response)
    assert error["attr"] == attr and "Numbers must be finite" in error["detail"]
    assert not Contact.objects.exists() and not Event.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_body_that_is_not_a_finite_number_is_a_400(api, literal):
    # The literals JSON does not have: DRF's strict parser refuses them.
    for body in (literal, f'{{"attributes": {{"a": {literal}}}}}'):
        response = _raw(api, "put", "/api/v1/contacts/inf3/", body)
        assert response.status_code == 400, response.content[:300]
        assert _errors(response)
    assert not Contact.objects.exists()


def test_large_finite_numbers_are_still_accepted(api):
    body = '{"attributes": {"big": 1e308, "small": -1e-300, "int": 123456789012345678901234567890}}'
    response = _raw(api, "put", "/api/v1/contacts/finite/", body)
    assert response.status_code in (200, 201), response.content[:300]
    assert float(Contact.objects.get(external_id="finite").attributes["big"]) == 1e308


def test_nul_in_a_path_parameter_is_a_400(api):
    response = _raw(api, "put", "/api/v1/contacts/x%00y/", '{"first_name": "Ada"}')
    assert response.status_code == 400
    [error] = _errors(response)
    assert error["attr"] == "external_id" and "NUL" in error["detail"]
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/messages/?contact=%00",
        "/api/v1/touchpoints/?contact=a%00b",
        "/api/v1/contacts/?email=%00",
        "/api/v1/survey-responses/?journey=%00",
    ],
)
def test_nul_in_a_query_parameter_is_a_400(api, path):
    response = api.get(path)
    assert response.status_code == 400
    [error] = _errors(response)
    assert error["attr"] == path.split("?")[1].split("=")[0]
    assert "NUL" in error["detail"]


def test_nul_in_a_query_string_outside_the_api_is_a_400_not_a_500(admin_client):
    response = admin_client.get("/admin/messaging/contact/?q=%00")
    assert response.status_code == 400


def test_nul_in_a_webhook_query_string_is_refused_before_anything_is_stored(db):
    from channels_app.models import WebhookEvent

    response = Client().post(
        "/webhooks/twilio/status/?m=%00",
        data="MessageSid=SM1&MessageStatus=delivered",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


# --- Item 9: every /api/ path answers JSON -------------------------------------------


def test_post_events_without_the_trailing_slash_is_accepted(api):
    response = api.post(
        "/api/v1/events",
        {"name": "order.completed", "contact": {"external_id": "slash-1"}},
        format="json",
    )
    assert response.status_code == 202, response.content[:300]
    assert response.json()["name"] == "order.completed"


def test_get_without_the_trailing_slash_is_served_too(api):
    response = api.get("/api/v1/messages")
    assert response.status_code == 200
    assert "results" in response.json()


def test_unknown_api_path_is_a_json_404(api):
    response = api.get("/api/v1/nope/")
    assert response.status_code == 404
    [error] = _errors(response)
    assert error["code"] == "not_found"
    assert "/api/v1/nope/" in error["detail"]


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(api):
    response = api.delete("/api/v1/events")
    assert response.status_code == 405
    [error] = _errors(response)
    assert "DELETE" in error["detail"]
    assert "POST" in response["Allow"]


def test_unauthenticated_unknown_api_path_is_json_too(db):
    response = Client().post("/api/v2/events", data=json.dumps({}), content_type="application/json")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"
