"""Segments API: CRUD by slug, live count, members, scopes, field-level 400s."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audiences.models import Segment
from messaging.models import ApiKey
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

JAKARTA = {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}


def client_with(*scopes: str) -> APIClient:
    _, key = ApiKey.objects.create_key(name="s", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def create(api, slug="jakarta", definition=None, **extra):
    body = {"name": slug.title(), "slug": slug, "definition": definition or JAKARTA, **extra}
    return api.post("/api/v1/segments/", body, format="json")


def test_crud_count_and_members(api):
    inside = [ContactFactory(timezone="Asia/Jakarta") for _ in range(3)]
    ContactFactory(timezone="UTC")
    response = create(api)
    assert response.status_code == 201, response.json()
    assert response.json()["slug"] == "jakarta"
    assert response.json()["kind"] == "dynamic"
    assert api.get("/api/v1/segments/jakarta/").json()["definition"] == JAKARTA
    assert api.get("/api/v1/segments/").json()["results"][0]["slug"] == "jakarta"
    assert api.get("/api/v1/segments/jakarta/count/").json()["count"] == 3

    page = api.get("/api/v1/segments/jakarta/members/?page_size=2").json()
    assert [m["id"] for m in page["results"]] == [c.pk for c in inside[:2]]
    assert page["results"][0]["external_id"] == inside[0].external_id
    rest = api.get(page["next"]).json()
    assert [m["id"] for m in rest["results"]] == [inside[2].pk]

    changed = api.patch(
        "/api/v1/segments/jakarta/",
        {"definition": {"not": JAKARTA}, "name": "Not Jakarta"},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert api.get("/api/v1/segments/jakarta/count/").json()["count"] == 1
    assert api.delete("/api/v1/segments/jakarta/").status_code == 204
    assert not Segment.objects.exists()
    assert api.get("/api/v1/segments/jakarta/").status_code == 404


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def test_bad_definitions_get_field_level_errors(api):
    response = create(
        api,
        definition={
            "all": [
                {"attribute": "plan", "op": "like", "value": "x"},
                {"any": [{"field": "shoe_size", "op": "eq", "value": "9"}]},
                {"event": "order.completed", "count": {"gte": -1}, "within_days": 0},
                {"bogus": 1},
            ]
        },
    )
    assert response.status_code == 400
    errors = _errors(response)
    assert "definition.all[0].op" in errors
    assert "definition.all[1].any[0].field" in errors
    assert "definition.all[2].count" in errors
    assert "definition.all[2].within_days" in errors
    assert "definition.all[3]" in errors
    assert not Segment.objects.exists()


@pytest.mark.parametrize(
    ("definition", "attr"),
    [
        ({"attribute": "score", "op": "gt", "value": "lots"}, "definition.value"),
        ({"attribute": "score", "op": "gt", "value": 10**400}, "definition.value"),
        ({"attribute": "0", "op": "exists"}, "definition.attribute"),
        ({"attribute": "a__b", "op": "exists"}, "definition.attribute"),
        ({"attribute": "plan", "op": "exists", "value": 1}, "definition.value"),
        ({"attribute": "plan", "op": "in", "value": []}, "definition.value"),
        ({"field": "created_at", "op": "gt", "value": "yesterday"}, "definition.value"),
        ({"reachable": "pigeon"}, "definition.reachable"),
        ({"any": []}, "definition.any"),
        ({"all": {"x": 1}}, "definition.all"),
        ({"not": [JAKARTA]}, "definition.not"),
        ([1, 2], "definition"),
        ({"segment": "nope"}, "definition.segment"),
        ({"event": "x", "since": "soon"}, "definition.since"),
        ({"event": "x", "where": [{"property": "t", "op": "gte"}]}, "definition.where[0].value"),
        ({"all": [JAKARTA], "any": [JAKARTA]}, "definition"),
    ],
)
def test_each_bad_input_is_a_400_at_its_path(api, definition, attr):
    response = create(api, definition=definition)
    assert response.status_code == 400, response.json()
    assert attr in _errors(response), response.json()


def test_nesting_depth_is_limited(api):
    deep: dict = JAKARTA
    for _ in range(7):
        deep = {"all": [deep]}
    response = create(api, definition=deep)
    assert response.status_code == 400
    assert any("nest" in d for d in _errors(response).values())
    assert create(api, definition={"all": [{"all": [{"not": JAKARTA}]}]}).status_code == 201


def test_cycles_are_refused_with_a_clear_error(api):
    assert create(api, "a", {"field": "locale", "op": "eq", "value": "en"}).status_code == 201
    assert create(api, "b", {"segment": "a"}).status_code == 201
    assert create(api, "c", {"any": [{"segment": "b"}, JAKARTA]}).status_code == 201
    response = api.patch(
        "/api/v1/segments/a/", {"definition": {"all": [{"segment": "c"}]}}, format="json"
    )
    assert response.status_code == 400
    errors = _errors(response)
    assert "cycle: a → c → b → a" in errors["definition.all[0].segment"]
    assert Segment.objects.get(slug="a").definition == {
        "field": "locale",
        "op": "eq",
        "value": "en",
    }
    itself = api.patch("/api/v1/segments/a/", {"definition": {"segment": "a"}}, format="json")
    assert "itself" in _errors(itself)["definition.segment"]
    # a segment others include cannot be deleted
    assert api.delete("/api/v1/segments/a/").status_code == 409
    assert Segment.objects.filter(slug="a").exists()


def test_other_bad_input(api):
    assert create(api).status_code == 201
    assert _errors(create(api)) == {"slug": "A segment with this slug exists."}
    assert "slug" in _errors(create(api, slug="Not a slug!"))
    static = create(api, "fixed", kind="static")
    assert static.status_code == 400 and "definition" in _errors(static)
    assert create(api, "fixed2", definition=None, kind="static").status_code == 400
    no_def = api.post(
        "/api/v1/segments/", {"name": "F", "slug": "fixed3", "kind": "static"}, format="json"
    )
    assert no_def.status_code == 201 and no_def.json()["definition"] == {}
    fixed = api.patch("/api/v1/segments/jakarta/", {"slug": "other"}, format="json")
    assert fixed.status_code == 400 and "slug" in _errors(fixed)
    assert api.get("/api/v1/segments/?kind=weird").status_code == 400
    assert api.get("/api/v1/segments/missing/count/").status_code == 404


def test_scopes():
    reader, writer, other = (
        client_with("segments:read"),
        client_with("segments:write"),
        client_with("contacts:read"),
    )
    assert create(reader).status_code == 403
    assert create(other).status_code == 403
    assert create(writer).status_code == 201
    assert reader.get("/api/v1/segments/jakarta/count/").status_code == 200
    assert reader.get("/api/v1/segments/jakarta/members/").status_code == 200
    assert writer.get("/api/v1/segments/").status_code == 403
    assert other.get("/api/v1/segments/jakarta/").status_code == 403
    assert reader.delete("/api/v1/segments/jakarta/").status_code == 403
    assert Segment.objects.filter(slug="jakarta").exists()


def test_a_definition_saved_through_the_api_is_applied_at_once(
    api, django_capture_on_commit_callbacks
):
    """Creating or changing a dynamic segment's definition recomputes its membership after
    the commit, as saving it in the admin does (not at the next periodic recompute)."""
    jakarta = ContactFactory(timezone="Asia/Jakarta")
    paris = ContactFactory(timezone="Europe/Paris")
    with django_capture_on_commit_callbacks(execute=True):
        assert create(api).status_code == 201
    segment = Segment.objects.get(slug="jakarta")
    members = lambda: set(segment.memberships.values_list("contact_id", flat=True))  # noqa: E731
    assert members() == {jakarta.pk}
    paris_only = {"field": "timezone", "op": "eq", "value": "Europe/Paris"}
    with django_capture_on_commit_callbacks(execute=True):
        changed = api.patch("/api/v1/segments/jakarta/", {"definition": paris_only}, format="json")
    assert changed.status_code == 200
    assert members() == {paris.pk}
    assert Segment.objects.get(pk=segment.pk).last_computed_at is not None
