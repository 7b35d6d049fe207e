"""The segment builder: the live-count endpoint (validation, count, sample, permissions,
bounded queries), the change form's panel and size chart, and a saved definition's
membership following at once."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from audiences.models import Segment, SegmentMembership, SegmentSize
from audiences.services import segment_recompute
from tests.factories import ContactFactory

from .conftest import segment
from .test_membership import staff

pytestmark = pytest.mark.django_db

URL = "/admin/audiences/segment/preview/"
JAKARTA = {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}


def preview(client, body, **kw):
    return client.post(URL, json.dumps(body), content_type="application/json", **kw)


def test_the_url_is_named():
    assert reverse("admin:audiences_segment_preview") == URL


def test_counts_an_unsaved_definition_with_a_sample(client):
    client.force_login(staff("marketing"))
    for i in range(12):
        ContactFactory(timezone="Asia/Jakarta", first_name=f"Jaya{i:02d}", last_name="")
    ContactFactory(timezone="UTC", first_name="Other")
    answer = preview(client, {"definition": json.dumps(JAKARTA)})
    assert answer.status_code == 200
    data = answer.json()
    assert data["count"] == 12 and data["errors"] == {}
    assert len(data["sample"]) == 10
    assert data["sample"][0]["label"] == "Jaya11"  # newest first
    assert data["sample"][0]["url"].startswith("/admin/messaging/contact/")
    # an object works as well as JSON text; an empty textarea is everyone
    assert preview(client, {"definition": JAKARTA}).json()["count"] == 12
    assert preview(client, {"definition": ""}).json()["count"] == 13


def test_field_level_errors(client):
    client.force_login(staff("marketing"))
    bad = preview(
        client, {"definition": {"all": [{"field": "timezone", "op": "like", "value": 1}]}}
    )
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    assert list(errors) == ["definition.all[0].op"], errors
    assert errors["definition.all[0].op"][0].startswith("Choose one of")
    not_json = preview(client, {"definition": '{"all": ['})
    assert not_json.status_code == 400
    assert list(not_json.json()["errors"]) == ["definition"]
    assert client.post(URL, "[1]", content_type="application/json").status_code == 400
    assert client.get(URL).status_code == 405
    missing = preview(client, {"definition": {"all": []}, "segment": "abc"})
    assert missing.status_code == 400 and "segment" in missing.json()["errors"]


def test_a_segment_being_edited_cannot_include_itself(client):
    client.force_login(staff("marketing"))
    seg = segment("vip", {"all": []})
    answer = preview(client, {"definition": {"segment": "vip"}, "segment": seg.pk})
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"definition.segment": ["A segment cannot include itself."]}


def test_needs_view_segment_and_shows_contacts_only_to_who_may_see_them(client):
    ContactFactory(timezone="Asia/Jakarta")
    nobody = User.objects.create_user("nobody", is_staff=True)
    client.force_login(nobody)
    assert preview(client, {"definition": JAKARTA}).status_code == 403
    nobody.user_permissions.add(Permission.objects.get(codename="view_segment"))
    client.force_login(User.objects.get(pk=nobody.pk))
    answer = preview(client, {"definition": JAKARTA}).json()
    assert (answer["count"], answer["sample"]) == (1, [])


def test_query_count_does_not_grow_with_contacts(client, django_assert_max_num_queries):
    client.force_login(staff("marketing"))
    for _ in range(30):
        ContactFactory(timezone="Asia/Jakarta")
    # session, user, permissions, others' definitions, SET LOCAL, count, sample, savepoints
    with django_assert_max_num_queries(12):
        assert preview(client, {"definition": JAKARTA}).json()["count"] == 30


def test_change_form_has_the_live_panel_and_the_size_chart(client):
    client.force_login(staff("marketing"))
    ContactFactory(timezone="Asia/Jakarta")
    seg = segment("jkt", JAKARTA)
    page = client.get(f"/admin/audiences/segment/{seg.pk}/change/").content.decode()
    assert 'id="segment-live"' in page and "audiences/segment_builder.js" in page
    assert "No sizes recorded yet" in page
    segment_recompute(segment=seg, now=timezone.now())
    assert SegmentSize.objects.get(segment=seg).member_count == 1
    page = client.get(f"/admin/audiences/segment/{seg.pk}/change/").content.decode()
    assert "<polyline" in page and "1 members now" in page
    from audiences.services import segment_sizes_record

    segment_sizes_record(sizes={seg.pk: 3}, now=timezone.now() - dt.timedelta(hours=2))
    page = client.get(f"/admin/audiences/segment/{seg.pk}/change/").content.decode()
    assert page.count("<circle") == 2 and "1 members now · highest 3" in page
    static = segment("picked", kind="static")
    page = client.get(f"/admin/audiences/segment/{static.pk}/change/").content.decode()
    assert 'id="segment-live"' not in page


def test_saving_a_definition_recomputes_that_segment(client, django_capture_on_commit_callbacks):
    client.force_login(staff("marketing"))
    ContactFactory(timezone="Asia/Jakarta")
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(
            "/admin/audiences/segment/add/",
            {"name": "J", "slug": "j", "kind": "dynamic", "definition": json.dumps(JAKARTA)},
        )
    assert saved.status_code == 302
    seg = Segment.objects.get(slug="j")
    assert SegmentMembership.objects.filter(segment=seg).count() == 1
    assert Segment.objects.get(pk=seg.pk).last_computed_at is not None


def test_the_visual_builder_is_offered_to_editors_of_dynamic_segments(client):
    seg = segment("vip", {"all": []})
    segment("other", {"all": []})
    fixed = segment("picked", kind="static")
    client.force_login(staff("marketing"))
    page = client.get(f"/admin/audiences/segment/{seg.pk}/change/")
    options = page.context["builder_options"]
    assert "timezone" in options["fields"] and "sms" in options["channels"]
    # every other segment, never itself (a segment cannot include itself)
    assert [s["slug"] for s in options["segments"]] == ["other", "picked"]
    assert 'id="segment-visual-builder"' in page.content.decode()
    assert (
        "builder_options" not in client.get(f"/admin/audiences/segment/{fixed.pk}/change/").context
    )
    assert client.get("/admin/audiences/segment/abc/change/").status_code in (302, 404)
    client.force_login(staff("viewer"))
    assert "builder_options" not in client.get(f"/admin/audiences/segment/{seg.pk}/change/").context
