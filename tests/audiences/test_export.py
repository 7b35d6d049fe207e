"""Segment export (streamed CSV, API and admin) and static lists from a CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.export import EXPORT_COLUMNS, csv_cell
from audiences.models import SegmentMembership, SegmentMembershipChange
from audiences.services import static_segment_add
from audiences.static_lists import StaticListError, static_list_apply
from audit.models import AuditEntry
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Consent, Contact
from tests.factories import ContactFactory

from .conftest import segment
from .test_api import client_with

pytestmark = pytest.mark.django_db


def _rows(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_api_export_streams_members_with_consent_and_is_audited():
    inside = ContactFactory(timezone="Asia/Jakarta", first_name="=HYPERLINK(1)")
    inside.attributes = {"plan": "pro"}
    inside.save()
    Consent.objects.create(
        contact=inside, channel="sms", status="subscribed", changed_at=timezone.now()
    )
    ContactFactory(timezone="UTC")
    segment("jakarta", {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"})
    api = client_with("segments:read", "contacts:read")
    response = api.get("/api/v1/segments/jakarta/export/")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="segment-jakarta-')
    rows = _rows(response)
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [r["external_id"] for r in rows] == [inside.external_id]
    row = rows[0]
    assert (row["phone"], row["consent.sms"], row["consent.email"]) == (
        inside.phone,
        "subscribed",
        "",
    )
    assert row["first_name"] == "'=HYPERLINK(1)"  # a formula is never handed to a spreadsheet
    assert row["attributes"] == '{"plan": "pro"}'
    entry = AuditEntry.objects.get(action="export")
    assert entry.actor_kind == "api_key"


def test_api_export_needs_contacts_read_as_well():
    segment("everyone", {"all": []})
    assert client_with("segments:read").get("/api/v1/segments/everyone/export/").status_code == 403
    assert client_with("contacts:read").get("/api/v1/segments/everyone/export/").status_code == 403
    assert not AuditEntry.objects.filter(action="export").exists()
    both = client_with("segments:read", "contacts:read")
    assert both.get("/api/v1/segments/nope/export/").status_code == 404


def test_export_reads_members_in_a_fixed_number_of_queries():
    seg = segment("list", kind="static")
    api = client_with("segments:read", "contacts:read")

    def queries(n: int) -> int:
        static_segment_add(
            segment=seg,
            contacts=Contact.objects.filter(pk__in=[ContactFactory().pk for _ in range(n)]),
            now=timezone.now(),
        )
        response = api.get("/api/v1/segments/list/export/")
        with CaptureQueriesContext(connection) as captured:
            rows = _rows(response)
        assert len(rows) == seg.memberships.count()
        return len(captured)

    assert queries(3) == queries(40)


def test_csv_cell_keeps_phone_numbers_and_neutralises_formulas():
    assert csv_cell("+14155552671") == "+14155552671"
    assert csv_cell("-") == "-"
    assert csv_cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell(None) == ""


def test_admin_export_action_needs_the_export_permission(client):
    ensure_staff_groups()
    seg = segment("list", kind="static")
    member = ContactFactory()
    static_segment_add(
        segment=seg, contacts=Contact.objects.filter(pk=member.pk), now=timezone.now()
    )
    marketer = User.objects.create_user("m", is_staff=True)
    marketer.groups.add(Group.objects.get(name="Marketing"))
    client.force_login(marketer)
    post = {"action": "export_contacts", "_selected_action": [seg.pk], "index": 0}
    response = client.post("/admin/audiences/segment/", post)
    assert response.status_code == 200
    assert [r["id"] for r in _rows(response)] == [str(member.pk)]

    support = User.objects.create_user("s", is_staff=True)
    support.groups.add(Group.objects.get(name="Support"))
    client.force_login(support)
    response = client.post("/admin/audiences/segment/", post)
    assert not getattr(response, "streaming", False)
    assert AuditEntry.objects.filter(action="export").count() == 1


# --- Static lists -----------------------------------------------------------------------


def _file(text: str):
    return SimpleUploadedFile("list.csv", text.encode())


def test_static_list_adds_and_removes_by_external_id_email_or_phone(now):
    seg = segment("list", kind="static")
    a = ContactFactory(external_id="a")
    b = ContactFactory(external_id=None, email="b@example.com")
    c = ContactFactory(external_id=None, email="", phone="+14155552699")
    text = "external_id,email,phone\na,,\n,B@example.com,\n,,+1 415 555 2699\nghost,,\n,,12\n"
    result = static_list_apply(segment=seg, binary=_file(text), operation="add", now=now)
    assert (result.rows, result.matched, result.changed, result.unmatched) == (5, 3, 3, 2)
    assert len(result.errors) == 1 and "Line 6" in result.errors[0]
    assert set(seg.memberships.values_list("contact_id", flat=True)) == {a.pk, b.pk, c.pk}
    again = static_list_apply(segment=seg, binary=_file(text), operation="add", now=now)
    assert again.changed == 0
    assert SegmentMembershipChange.objects.filter(change="entered").count() == 3

    removed = static_list_apply(
        segment=seg, binary=_file("email\nb@example.com\n"), operation="remove", now=now
    )
    assert removed.changed == 1
    assert not SegmentMembership.objects.filter(contact=b).exists()
    left = SegmentMembershipChange.objects.get(change="left")
    assert (left.contact_id, left.at) == (b.pk, now)
    seg.refresh_from_db()
    assert seg.member_count == 2


def test_static_list_refuses_dynamic_segments_and_files_without_a_key(now):
    with pytest.raises(StaticListError):
        static_list_apply(
            segment=segment("dyn", {"all": []}),
            binary=_file("email\nx@example.com\n"),
            operation="add",
            now=now,
        )
    with pytest.raises(StaticListError):
        static_list_apply(
            segment=segment("list", kind="static"),
            binary=_file("name\nAda\n"),
            operation="add",
            now=now,
        )


def test_static_segment_page_links_to_the_list_upload(admin_client):
    seg = segment("list", kind="static")
    page = admin_client.get(f"/admin/audiences/segment/{seg.pk}/change/")
    assert page.status_code == 200
    assert f"/admin/audiences/segment/{seg.pk}/static-list/".encode() in page.content
    dynamic = segment("dyn", {"all": []})
    page = admin_client.get(f"/admin/audiences/segment/{dynamic.pk}/change/")
    assert page.status_code == 200 and b"static-list" not in page.content
