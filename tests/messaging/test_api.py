"""The messages and contacts API: auth, validation, idempotency, timeline pagination."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from messaging.models import ApiKey, Contact, Message, Touchpoint
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def send(api, payload, **headers):
    return api.post("/api/v1/messages/", payload, format="json", **headers)


def test_requires_an_api_key(db):
    response = APIClient().post("/api/v1/messages/", {}, format="json")
    assert response.status_code == 401
    assert response.json()["type"] == "client_error"


def test_rejects_a_bad_or_revoked_key(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert client.get("/api/v1/contacts/x/").status_code == 401
    ApiKey.objects.update(revoked=True)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    assert client.get("/api/v1/contacts/x/").status_code == 401


def test_scope_is_enforced(db):
    _, key = ApiKey.objects.create_key(name="reader", scopes=["contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = send(client, {"channel": "sms"})
    assert response.status_code == 403
    assert "messages:write" in response.json()["errors"][0]["detail"]


def test_send_sms_by_external_id_end_to_end(api, simulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(
            api,
            {
                "contact": {"external_id": "u-1", "phone": "+1 415 555 2671", "first_name": "Ada"},
                "channel": "sms",
                "body": "Hi {{ contact.first_name }}, order {{ event.order }}",
                "context": {"order": "A-1"},
            },
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["contact"]["external_id"] == "u-1"
    contact = Contact.objects.get(external_id="u-1")
    assert contact.phone == "+14155552671"  # normalised to E.164
    [received] = simulator.messages()
    assert received["body"] == "Hi Ada, order A-1"
    detail = api.get(f"/api/v1/messages/{body['id']}/").json()
    assert detail["status"] == "sent" and detail["provider_message_id"] == received["id"]


def test_send_email_with_template_and_inline_contact(api, simulator):
    TemplateFactory(
        slug="welcome", channel="email", subject="Welcome {{ contact.first_name }}", body="Hello"
    )
    response = send(
        api,
        {
            "contact": {"email": "New@Example.com", "first_name": "Bo"},
            "channel": "email",
            "template": "welcome",
        },
    )
    assert response.status_code == 202, response.json()
    message = Message.objects.get(pk=response.json()["id"])
    assert message.subject == "Welcome Bo"
    assert message.to_address == "new@example.com"
    assert message.contact.external_id is None


def test_idempotency_key_header_replays_and_conflicts(
    api, simulator, django_capture_on_commit_callbacks
):
    payload = {
        "contact": {"external_id": "u-2", "phone": "+14155552672"},
        "channel": "sms",
        "body": "once",
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = send(api, payload, HTTP_IDEMPOTENCY_KEY="k-1")
        second = send(api, payload, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert Message.objects.count() == 1
    assert len(simulator.messages()) == 1
    conflict = send(api, {**payload, "body": "twice"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert conflict.status_code == 409
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "attr"),
    [
        ({"channel": "sms", "body": "x"}, "contact"),
        ({"contact": {"external_id": "a"}, "channel": "fax", "body": "x"}, "channel"),
        (
            {"contact": {"external_id": "a", "phone": "12"}, "channel": "sms", "body": "x"},
            "contact.phone",
        ),
        (
            {
                "contact": {"external_id": "a", "timezone": "Mars/Base"},
                "channel": "sms",
                "body": "x",
            },
            "contact.timezone",
        ),
        ({"contact": {}, "channel": "sms", "body": "x"}, "contact.non_field_errors"),
        ({"contact": {"external_id": "a"}, "channel": "sms", "bdy": "typo"}, "bdy"),
        (
            {
                "contact": {"external_id": "a", "phone": "+14155552671"},
                "channel": "sms",
                "body": "{{ oops }",
            },
            "body",
        ),
        (
            {
                "contact": {"external_id": "a", "phone": "+14155552671"},
                "channel": "sms",
                "template": "nope",
            },
            "template",
        ),
        (
            {"contact": {"external_id": "a"}, "channel": "email", "subject": "s", "body": "b"},
            "channel",
        ),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_nothing_half_written(api, payload, attr):
    response = send(api, payload)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "validation_error"
    assert attr in [e["attr"] for e in body["errors"]], body
    assert Message.objects.count() == 0
    assert not Contact.objects.filter(external_id="a").exists()


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", "application/json"),
        (b'{"contact": ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"contact=1", "application/x-www-form-urlencoded"),
        (b"null", "application/json"),
    ],
)
def test_malformed_bodies_are_4xx(api, raw, content_type):
    response = api.generic("POST", "/api/v1/messages/", raw, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert Message.objects.count() == 0


def test_oversized_body_is_rejected(api):
    big = b'{"body": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = api.generic("POST", "/api/v1/messages/", big, content_type="application/json")
    assert response.status_code == 413


def test_unknown_message_is_404(api):
    assert api.get("/api/v1/messages/6f1c2b9e-1111-4a4a-9b9b-123456789abc/").status_code == 404
    assert api.get("/api/v1/messages/not-a-uuid/").status_code == 404


def test_contact_put_creates_then_updates_and_patch_needs_it(api):
    created = api.put(
        "/api/v1/contacts/c-9/",
        {
            "email": "c9@example.com",
            "attributes": {"plan": "pro", "seats": 3},
            "consent": {"sms": "subscribed"},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["consent"] == {
        "sms": "subscribed",
        "whatsapp": "unknown",
        "email": "unknown",
    }
    updated = api.put(
        "/api/v1/contacts/c-9/", {"first_name": "Cy", "attributes": {"seats": None}}, format="json"
    )
    assert updated.status_code == 200
    assert updated.json()["attributes"] == {"plan": "pro"}
    assert updated.json()["email"] == "c9@example.com"
    assert (
        api.patch("/api/v1/contacts/nobody/", {"first_name": "x"}, format="json").status_code == 404
    )
    assert not Contact.objects.filter(external_id="nobody").exists()
    assert api.get("/api/v1/contacts/c-9/").json()["first_name"] == "Cy"
    bad = api.patch("/api/v1/contacts/c-9/", {"consent": {"fax": "subscribed"}}, format="json")
    assert bad.status_code == 400


def test_timeline_is_newest_first_with_cursor_pagination(api, simulator):
    contact = ContactFactory(external_id="t-1")
    from messaging.services import touchpoint_record

    for i in range(7):
        touchpoint_record(contact_id=contact.pk, kind="event", data={"name": f"e{i}"})
    first = api.get("/api/v1/contacts/t-1/touchpoints/?page_size=5").json()
    assert [t["data"]["name"] for t in first["results"]] == ["e6", "e5", "e4", "e3", "e2"]
    second = api.get(first["next"]).json()
    assert [t["data"]["name"] for t in second["results"]] == ["e1", "e0"]
    assert second["next"] is None
    assert Touchpoint.objects.count() == 7
    assert api.get("/api/v1/contacts/t-1/touchpoints/?channel=fax").status_code == 400
    assert api.get("/api/v1/contacts/none/touchpoints/").status_code == 404
    ContactFactory(external_id="quiet")
    empty = api.get("/api/v1/contacts/quiet/touchpoints/")
    assert empty.status_code == 200 and empty.json()["results"] == []


def test_timeline_page_is_what_the_touchpoint_serializer_gives(api, simulator):
    """The timeline's hand-written row serialiser and TouchpointOutput agree field for field,
    for rows with and without a message, a channel, microseconds and nested data."""
    import datetime as dt
    import json

    from rest_framework.renderers import JSONRenderer

    from messaging.api.touchpoints import TouchpointOutput
    from messaging.services import touchpoint_record

    contact = ContactFactory(external_id="t-shape", phone="+14155550100")
    message = Message.objects.create(
        contact=contact,
        channel="sms",
        direction="outbound",
        to_address="+14155550100",
        body="hi",
        status="sent",
    )
    when = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.UTC)
    touchpoint_record(
        contact_id=contact.pk,
        kind="sent",
        direction="outbound",
        channel="sms",
        message_id=message.pk,
        occurred_at=when,
        data={"provider_id": "SM1", "nested": {"list": [1, "two", None]}},
    )
    touchpoint_record(contact_id=contact.pk, kind="event", occurred_at=when.replace(microsecond=0))
    served = api.get("/api/v1/contacts/t-shape/touchpoints/").json()["results"]
    rows = Touchpoint.objects.filter(contact=contact).order_by("-occurred_at", "-id")
    expected = json.loads(JSONRenderer().render(TouchpointOutput(rows, many=True).data))
    assert served == expected
    assert served[0]["message"] == str(message.pk) and served[0]["occurred_at"].endswith("Z")


def test_timeline_page_reads_the_contact_id_then_one_page(api, simulator):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from messaging.services import touchpoint_record

    contact = ContactFactory(external_id="t-q")
    for i in range(60):
        touchpoint_record(contact_id=contact.pk, kind="event", data={"n": i})
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/contacts/t-q/touchpoints/")
    assert len(response.json()["results"]) == 50
    page_queries = [q["sql"] for q in queries if "messaging_touchpoint" in q["sql"]]
    contact_reads = [q["sql"] for q in queries if 'FROM "messaging_contact"' in q["sql"]]
    # One page query by the contact's id (no join: see selectors.contact_timeline), and the
    # contact read is its id alone, not the whole row.
    assert len(page_queries) == 1 and "JOIN" not in page_queries[0]
    assert len(contact_reads) == 1
    assert contact_reads[0].split(" FROM ")[0] == 'SELECT "messaging_contact"."id" AS "id"'
