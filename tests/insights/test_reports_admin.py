"""The staff Reports page: who sees it, the date range form, CSV downloads and their audit,
formula escaping, and the links to it from the admin home, journeys and broadcasts."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Group, User

from audit.models import AuditEntry
from insights.reports_csv import report_cell
from journeys.staff_groups import ensure_staff_groups

from . import report_world as w

pytestmark = pytest.mark.django_db

RANGE = {"start": "2026-03-01", "end": "2026-03-31"}


@pytest.fixture
def as_role(client):
    ensure_staff_groups()

    def login(group: str):
        user = User.objects.create_user(f"{group.lower()}-user", password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_marketing_sees_a_report_with_its_csv_link(as_role):
    msg = w.message(channel="email")
    w.link_click(w.link(msg))
    client = as_role("Marketing")
    page = client.get("/admin/touchline/reports/channels/", RANGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="reports-table"' in html and "<td>email</td>" in html
    assert "/admin/touchline/reports/channels/csv/?start=2026-03-01&amp;end=2026-03-31" in html
    assert "Which source counted" in html
    for tab in ("templates", "broadcasts", "journeys", "links"):
        assert f"/admin/touchline/reports/{tab}/" in html
    assert not AuditEntry.objects.exists()  # reading is not audited


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2026-13-01"}, "Enter a valid date."),
        ({"start": "2026-03-10", "end": "2026-03-01"}, "The end date is before the start date."),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "At most 366 days."),
        # Well-formed but out of range: no overflow (a 500) computing the range.
        ({"end": "9999-12-31"}, "Choose a date between 2000-01-01 and"),
        ({"end": "0001-01-01"}, "Choose a date between 2000-01-01 and"),
        ({"start": "0001-01-01", "end": "2026-01-01"}, "Choose a date between 2000-01-01 and"),
    ],
)
def test_a_bad_range_is_a_400_with_the_field_error(as_role, params, message):
    client = as_role("Viewer")
    page = client.get("/admin/touchline/reports/channels/", params)
    assert page.status_code == 400
    assert message in page.content.decode()
    assert 'id="reports-table"' not in page.content.decode()
    csv_response = client.get("/admin/touchline/reports/channels/csv/", params)
    assert csv_response.status_code == 400 and message in csv_response.content.decode()


def test_support_is_refused_and_anonymous_sent_to_login(as_role, client):
    assert client.get("/admin/touchline/reports/channels/").status_code == 302
    support = as_role("Support")
    assert support.get("/admin/touchline/reports/channels/").status_code == 403
    assert support.get("/admin/touchline/reports/channels/csv/").status_code == 403
    assert not AuditEntry.objects.exists()


def test_the_journey_tab_first_asks_for_a_journey(as_role):
    w.journey()
    client = as_role("Marketing")
    page = client.get("/admin/touchline/reports/journeys/", RANGE)
    assert page.status_code == 200 and 'id="reports-choose"' in page.content.decode()
    assert 'id="reports-table"' not in page.content.decode()
    chosen = client.get("/admin/touchline/reports/journeys/", {**RANGE, "journey": "welcome"})
    assert chosen.status_code == 200 and "<td>offer</td>" in chosen.content.decode()
    bad = client.get("/admin/touchline/reports/journeys/", {"start": "x"})
    assert bad.status_code == 400


def test_unknown_report_is_a_404(as_role):
    assert as_role("Marketing").get("/admin/touchline/reports/nope/").status_code == 404


def test_csv_download_is_audited_and_escapes_formulas(as_role):
    for slug, name in [
        ("f1", '=HYPERLINK("http://evil")'),
        ("f2", "+SUM(A1:A2)"),
        ("f3", "-2+3"),
        ("f4", "@cmd"),
        ("f5", "  =1+1"),
        ("f6", "Plain"),
    ]:
        w.broadcast_message(w.broadcast(slug, name))
    response = as_role("Marketing").get("/admin/touchline/reports/broadcasts/csv/", RANGE)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    header, *rows = _csv(response)
    assert header[:3] == ["broadcast", "name", "messages"]
    names = {row[0]: row[1] for row in rows}
    assert names == {
        "f1": '\'=HYPERLINK("http://evil")',
        "f2": "'+SUM(A1:A2)",
        "f3": "'-2+3",
        "f4": "'@cmd",
        "f5": "'  =1+1",
        "f6": "Plain",
    }
    assert all(row[2] == "1" for row in rows)
    entry = AuditEntry.objects.get(action="export")
    assert (entry.object_type, entry.object_id) == ("insights.report", "broadcasts")


def test_numbers_are_never_escaped():
    assert report_cell(0) == "0" and report_cell(None) == "" and report_cell(0.25) == "0.25"
    assert report_cell("-") == "'-" and report_cell("\t=1") == "'\t=1"


def test_journey_csv_has_every_step_and_revenue_per_currency(as_role):
    j = w.journey()
    e = w.enrollment(j)
    w.visit(e, "hello")
    w.convert(w.journey_message(e, "hello"), "4.50", "EUR")
    w.convert(w.journey_message(w.enrollment(j), "offer"), "-1.00", "USD")  # a refund
    response = as_role("Viewer").get(
        "/admin/touchline/reports/journeys/csv/", {**RANGE, "journey": "welcome"}
    )
    header, *rows = _csv(response)
    assert header[-2:] == ["revenue_EUR", "revenue_USD"]
    by_step = {row[0]: row for row in rows}
    assert list(by_step) == ["hello", "wait", "offer"]
    assert by_step["hello"][-2:] == ["4.50", ""]
    assert by_step["offer"][-2:] == ["", "-1.00"]  # a number: not escaped


def test_pages_link_to_reports_for_those_who_may_see_them(as_role, client):
    j = w.journey()
    b = w.broadcast()
    marketing = as_role("Marketing")
    assert 'id="touchline-reports-link"' in marketing.get("/admin/").content.decode()
    dashboard = marketing.get(f"/admin/touchline/journeys/{j.pk}/dashboard/").content.decode()
    assert "/admin/touchline/reports/journeys/?journey=welcome" in dashboard
    report = marketing.get(f"/admin/campaigns/broadcast/{b.pk}/report/").content.decode()
    assert "/admin/touchline/reports/broadcasts/?broadcast=spring-sale" in report
    support = as_role("Support")
    assert 'id="touchline-reports-link"' not in support.get("/admin/").content.decode()
