"""Templates API (issue 13): CRUD by (slug, channel), render, scopes, audit, and the admin's
validation: bad Liquid, limits, channel rules, NUL bytes, duplicates, templates in use."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from journeys.models import Journey, Step
from messaging.models import ApiKey, Template
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/templates/"
SID = "HX" + "0123456789abcdef" * 2
SMS = {"slug": "thanks", "channel": "sms", "name": "Thanks", "body": "Hi {{ contact.first_name }}"}
EMAIL = {
    "slug": "thanks",
    "channel": "email",
    "name": "Thanks",
    "subject": "Order {{ event.order_id }}",
    "html_body": "<p>Hi {{ contact.first_name }}</p>",
}
HUGE_RANGE = "{{ (1..10000000) | join: ',' | size }}"
DEEP_IFS = "{% if true %}" * 200 + "x" + "{% endif %}" * 200


def client_with(*scopes: str) -> APIClient:
    _, key = ApiKey.objects.create_key(name="t", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def state() -> tuple[list[dict], int]:
    """Every template as stored, and the number of audit entries."""
    return list(Template.objects.order_by("pk").values()), AuditEntry.objects.count()


def journey_using(slug: str, *, status: str = "draft", **config) -> Journey:
    journey = Journey.objects.create(
        name="Thanks", slug="post-buy", status=status, trigger_event="order.completed"
    )
    Step.objects.create(
        journey=journey, key="say-thanks", kind="send", config={"template": slug, **config}
    )
    return journey


def test_crud_by_slug_and_channel_is_audited(api):
    assert api.post(LIST, SMS, format="json").status_code == 201
    created = api.post(LIST, EMAIL, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["subject"] == EMAIL["subject"]
    assert [t["channel"] for t in api.get(LIST, {"slug": "thanks"}).json()["results"]] == [
        "email",
        "sms",
    ]
    assert [t["channel"] for t in api.get(LIST, {"channel": "sms"}).json()["results"]] == ["sms"]
    assert api.get(LIST, {"slug": "other"}).json()["results"] == []
    assert api.get(LIST + "thanks/sms/").json()["body"] == SMS["body"]

    # PATCH changes what it names; PUT replaces the whole template (description goes back).
    patched = api.patch(LIST + "thanks/sms/", {"description": "for orders"}, format="json")
    assert patched.status_code == 200 and patched.json()["body"] == SMS["body"]
    put = api.put(LIST + "thanks/sms/", {"name": "Thanks!", "body": "Thank you"}, format="json")
    assert put.status_code == 200, put.json()
    stored = Template.objects.get(slug="thanks", channel="sms")
    assert (stored.name, stored.body, stored.description) == ("Thanks!", "Thank you", "")
    # PUT to a new (slug, channel) creates it; a PATCH there is a 404.
    wa = {"name": "WA", "content_sid": SID, "content_variables": {"1": "{{ contact.name }}"}}
    assert api.put(LIST + "thanks/whatsapp/", wa, format="json").status_code == 201
    assert api.patch(LIST + "nope/sms/", {"name": "x"}, format="json").status_code == 404

    assert api.delete(LIST + "thanks/sms/").status_code == 204
    assert api.get(LIST + "thanks/sms/").status_code == 404
    assert api.get(LIST + "thanks/fax/").status_code == 404
    assert set(Template.objects.values_list("channel", flat=True)) == {"email", "whatsapp"}

    entries = list(AuditEntry.objects.order_by("id"))
    actions = ["create", "create", "change", "change", "create", "delete"]
    assert [e.action for e in entries] == actions
    assert {e.actor_kind for e in entries} == {"api_key"}
    assert all(e.object_type == "messaging.template" for e in entries)
    assert entries[2].changes == {"description": ["", "for orders"]}


def test_slug_and_channel_name_the_template_and_do_not_change(api):
    api.post(LIST, SMS, format="json")
    response = api.patch(LIST + "thanks/sms/", {"slug": "renamed"}, format="json")
    assert response.status_code == 400 and "slug" in errors(response)
    # Sending them back unchanged (as read) is fine.
    same = api.put(LIST + "thanks/sms/", {**SMS, "body": "Hello"}, format="json")
    assert same.status_code == 200, same.json()
    assert Template.objects.get().slug == "thanks"


WRITES = [
    ("post", LIST, {**SMS, "slug": "new"}),
    ("put", LIST + "thanks/sms/", {"name": "Changed", "body": "Changed"}),
    ("put", LIST + "other/sms/", {"name": "Other", "body": "New"}),
    ("patch", LIST + "thanks/sms/", {"body": "Changed"}),
    ("delete", LIST + "thanks/sms/", None),
]
READS = [
    ("get", LIST, None),
    ("get", LIST + "thanks/sms/", None),
    ("post", LIST + "thanks/sms/render/", {}),
    ("post", LIST + "render/", {"channel": "sms", "body": "Hi"}),
]


@pytest.mark.parametrize(("method", "url", "body"), WRITES)
def test_writes_need_templates_write_and_a_refusal_changes_nothing(method, url, body):
    TemplateFactory(slug="thanks", channel="sms")
    before = state()
    for scopes in ([], ["templates:read"], ["contacts:write", "segments:write"]):
        refused = getattr(client_with(*scopes), method)(url, body, format="json")
        assert refused.status_code == 403, refused.content
        assert "templates:write" in refused.json()["errors"][0]["detail"]
        assert state() == before
    allowed = getattr(client_with("templates:write"), method)(url, body, format="json")
    assert allowed.status_code in (200, 201, 204), allowed.content
    assert state() != before


@pytest.mark.parametrize(("method", "url", "body"), READS)
def test_reads_and_renders_need_templates_read(method, url, body):
    TemplateFactory(slug="thanks", channel="sms")
    before = state()
    refused = getattr(client_with("templates:write"), method)(url, body, format="json")
    assert refused.status_code == 403 and state() == before
    allowed = getattr(client_with("templates:read"), method)(url, body, format="json")
    assert allowed.status_code == 200, allowed.content
    assert state() == before  # reading and rendering write nothing, not even an audit entry


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"body": "Hi {% if %}"}, "body", "line 1"),
        ({"body": "Hi {{ name | no_such_filter }}"}, "body", "no_such_filter"),
        ({"body": "ok\n\n{% for x in y %}"}, "body", "line 3"),
        ({"body": HUGE_RANGE}, "body", "TEMPLATE_MAX_RANGE_SIZE"),
        ({"body": DEEP_IFS}, "body", "TEMPLATE_MAX_NESTING_DEPTH"),
        ({"body": ""}, "body", "Write a body"),
        ({"body": "x" * 20001}, "body", "20000"),
        ({"content_sid": SID}, "content_sid", "Only WhatsApp"),
        ({"slug": "Not a slug!"}, "slug", "slug"),
        ({"channel": "fax"}, "channel", "not a valid choice"),
        ({"channel": "email", "subject": "", "body": "Hi"}, "subject", "needs a subject"),
        ({"channel": "email", "subject": "{{ x", "body": "Hi"}, "subject", ""),
        ({"channel": "whatsapp", "content_sid": "HX123"}, "content_sid", "32 hexadecimal"),
        (
            {"channel": "whatsapp", "content_variables": {"1": "{{ x | nope }}"}},
            "content_variables",
            "1: ",
        ),
        ({"name": "x", "surprise": 1}, "surprise", "Unknown field"),
        ({"body": "nul \x00 byte"}, "body", "NUL bytes"),
        ({"channel": "whatsapp", "content_variables": {"1": "a\x00"}}, "content_variables", "NUL"),
    ],
)
def test_bad_templates_are_refused_field_by_field_and_nothing_is_stored(api, fields, field, says):
    TemplateFactory(slug="kept", channel="sms", body="Unchanged")
    before = state()
    response = api.post(LIST, {**SMS, **fields}, format="json")
    assert response.status_code == 400, response.content
    found = errors(response)
    assert any(attr and attr.startswith(field) for attr in found), found
    assert says in " ".join(found.values())
    # The same refusal when changing an existing template, which keeps what it had.
    change = {k: v for k, v in fields.items() if k not in ("slug", "channel")}
    if change and "channel" not in fields and "slug" not in fields:
        patched = api.patch(LIST + "kept/sms/", change, format="json")
        assert patched.status_code == 400, patched.content
    assert state() == before


def test_nul_bytes_in_the_url_and_query_are_refused(api):
    assert api.get(LIST, {"slug": "a\x00b"}).status_code == 400
    assert api.get(LIST, {"channel": "sms\x00"}).status_code == 400


def test_a_duplicate_slug_and_channel_is_a_409_on_the_fields(api):
    assert api.post(LIST, SMS, format="json").status_code == 201
    before = state()
    again = api.post(LIST, {**SMS, "name": "Again"}, format="json")
    assert again.status_code == 409
    assert set(errors(again)) == {"slug", "channel"}
    assert "exists" in errors(again)["slug"]
    assert state() == before
    # The same slug on another channel is another template.
    assert api.post(LIST, EMAIL, format="json").status_code == 201


def test_a_template_a_journey_sends_cannot_be_deleted(api):
    TemplateFactory(slug="thanks", channel="sms")
    TemplateFactory(slug="thanks", channel="email", subject="Hi", body="Hi")
    journey = journey_using("thanks", channel="sms", fallback_channels=[])
    before = state()
    refused = api.delete(LIST + "thanks/sms/")
    assert refused.status_code == 409
    detail = " ".join(e["detail"] for e in refused.json()["errors"])
    assert "post-buy" in detail and "say-thanks" in detail
    assert state() == before
    # The step sends only SMS: its email version is not in use.
    assert api.delete(LIST + "thanks/email/").status_code == 204
    # A re-ask template counts too; an archived journey uses nothing.
    Step.objects.filter(journey=journey).update(
        config={"template": "other", "reprompt_template": "thanks", "channel": "sms"}
    )
    journey.steps.update(kind="survey")
    assert api.delete(LIST + "thanks/sms/").status_code == 409
    Journey.objects.filter(pk=journey.pk).update(status="archived")
    assert api.delete(LIST + "thanks/sms/").status_code == 204


def test_the_admin_refuses_deleting_a_template_in_use(admin_client):
    template = TemplateFactory(slug="thanks", channel="sms")
    journey_using("thanks", status="active")
    url = reverse("admin:messaging_template_delete", args=[template.pk])
    page = admin_client.post(url, {"post": "yes"})
    assert Template.objects.filter(pk=template.pk).exists()
    assert "post-buy" in page.content.decode()
    action = admin_client.post(
        reverse("admin:messaging_template_changelist"),
        {"action": "delete_selected", "_selected_action": [template.pk], "post": "yes"},
    )
    assert action.status_code == 200 and Template.objects.filter(pk=template.pk).exists()


def test_the_admin_refuses_what_the_api_refuses(admin_client):
    response = admin_client.post(
        reverse("admin:messaging_template_add"),
        {
            "name": "WA",
            "slug": "wa",
            "channel": "whatsapp",
            "content_sid": "HX123",
            "content_variables": "{}",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "32 hexadecimal" in response.content.decode()
    assert not Template.objects.exists()


def test_render_a_saved_template_with_a_context(api):
    TemplateFactory(
        slug="order",
        channel="email",
        subject="Order {{ event.order_id }}",
        body="",
        html_body="<p>Hi {{ contact.first_name }}, {{ contact.plan }}</p>",
    )
    response = api.post(
        LIST + "order/email/render/",
        {
            "context": {"order_id": "1001"},
            "contact": {"first_name": "Grace", "attributes": {"plan": "pro"}},
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    rendered = response.json()
    assert rendered["subject"] == "Order 1001"
    assert "Hi Grace, pro" in rendered["html_body"] and rendered["body"] == "Hi Grace, pro"
    assert rendered["warnings"] == ["The contact has no email address: a send would be refused."]
    assert api.post(LIST + "order/sms/render/", {}, format="json").status_code == 404


def test_render_warns_about_long_sms_and_refuses_what_fails_with_this_context(api):
    TemplateFactory(slug="long", channel="sms", body="{{ event.text }}")
    response = api.post(
        LIST + "long/sms/render/",
        {"context": {"text": "ж" * 1700}, "contact": {"phone": "+14155552671"}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["sms"] == {
        "encoding": "UCS-2",
        "characters": 1700,
        "segments": 26,
        "per_segment": 67,
    }
    assert response.json()["warnings"] == [
        "The rendered body is over 1600 characters: a send would be refused."
    ]
    TemplateFactory(
        slug="loop", channel="sms", body="{% for i in event.items %}{{ i }}{% endfor %}"
    )
    over = api.post(
        LIST + "loop/sms/render/", {"context": {"items": list(range(20000))}}, format="json"
    )
    assert over.status_code == 400
    assert "TEMPLATE_MAX_LOOP_ITERATIONS" in errors(over)["body"]


def test_render_a_draft_checks_it_as_a_save_would(api):
    ok = api.post(
        LIST + "render/",
        {"channel": "sms", "body": "Hi {{ contact.first_name }}", "contact": {"first_name": "Al"}},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["body"] == "Hi Al"
    # Without a contact: an example one, with an address on every channel.
    for channel in ("sms", "whatsapp"):
        sample = api.post(
            LIST + "render/",
            {"channel": channel, "body": "Hi {{ contact.first_name }}"},
            format="json",
        ).json()
        assert (sample["body"], sample["warnings"]) == ("Hi Ada", [])
    bad = api.post(LIST + "render/", {"channel": "email", "body": "{% if %}"}, format="json")
    assert bad.status_code == 400
    assert {"body", "subject"} <= set(errors(bad))
    assert not Template.objects.exists()


def test_messaging_learns_of_template_users_without_importing_upward():
    """The in-use check reaches journeys through messaging.template_usage's registry only."""
    import ast
    from pathlib import Path

    import messaging
    from messaging.template_usage import CHECKERS

    assert "journeys" in CHECKERS
    upward = {"journeys", "audiences", "campaigns", "insights", "outbound"}
    for path in Path(messaging.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not {n.split(".")[0] for n in names} & upward, f"{path} imports {names}"
