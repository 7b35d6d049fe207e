"""The reports API: scope, JSON and CSV, field errors for bad query parameters, audit."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from messaging.models import ApiKey

from . import report_world as w

pytestmark = pytest.mark.django_db

RANGE = {"start": "2026-03-01", "end": "2026-03-31"}


def _client(*scopes: str) -> APIClient:
    _, key = ApiKey.objects.create_key(name="reports", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/reports/channels/",
        "/api/v1/reports/templates/",
        "/api/v1/reports/broadcasts/",
        "/api/v1/reports/journeys/welcome/",
        "/api/v1/reports/links/?journey=welcome",
    ],
)
def test_every_report_needs_the_reports_scope(url):
    w.journey()
    refused = _client("broadcasts:read", "journeys:read", "messages:read").get(url)
    assert refused.status_code == 403
    assert "reports:read" in refused.json()["errors"][0]["detail"]
    assert APIClient().get(url).status_code in (401, 403)
    assert _client("reports:read").get(url).status_code == 200


def test_channel_report_json_and_csv():
    msg = w.message(channel="email")
    w.provider_click(msg)
    w.link_click(w.link(msg))
    w.convert(msg, "9.99", "EUR")
    api = _client("reports:read")
    data = api.get("/api/v1/reports/channels/", RANGE).json()
    assert data["period"] == {"start": "2026-03-01", "end": "2026-03-31"}
    row = data["rows"][0]
    assert (row["channel"], row["clicked"], row["clicked_both"], row["revenue"]) == (
        "email",
        1,
        1,
        {"EUR": "9.99"},
    )
    assert "headline" not in data and "clicked" in data["sources"]
    response = api.get("/api/v1/reports/channels/", {**RANGE, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "report-channels-2026-03-01-2026-03-31.csv" in response["Content-Disposition"]
    header, *rows = _csv(response)
    assert header[:3] == ["channel", "messages", "sent"] and header[-1] == "revenue_EUR"
    assert len(rows) == 1 and rows[0][0] == "email"
    assert rows[0][header.index("clicked")] == "1" and rows[0][-1] == "9.99"
    entry = AuditEntry.objects.get(action="export")
    assert entry.object_type == "insights.report" and entry.object_id == "channels"


def test_an_unknown_journey_is_a_404():
    response = _client("reports:read").get("/api/v1/reports/journeys/nope/", RANGE)
    assert response.status_code == 404


def test_accept_header_also_gives_csv():
    response = _client("reports:read").get(
        "/api/v1/reports/templates/", RANGE, HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200
    assert _csv(response)[0][:2] == ["template", "template_channel"]


def test_journey_report_has_steps_and_dropoff():
    j = w.journey()
    e = w.enrollment(j)
    w.visit(e, "hello")
    w.journey_message(e, "hello")
    data = _client("reports:read").get("/api/v1/reports/journeys/welcome/", RANGE).json()
    assert [s["step"] for s in data["steps"]] == ["hello", "wait", "offer"]
    assert data["steps"][0]["entered"] == 1 and data["steps"][1]["lost"] == 1
    csv_rows = _csv(
        _client("reports:read").get("/api/v1/reports/journeys/welcome/", {**RANGE, "format": "csv"})
    )
    assert csv_rows[0][:6] == ["step", "kind", "position", "entered", "lost", "lost_share"]
    assert [r[0] for r in csv_rows[1:]] == ["hello", "wait", "offer"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-02-30"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-03-01\x00"}, "end"),
        ({"start": "2026-03-10", "end": "2026-03-01"}, "end"),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "end"),  # 367 days
        ({"channel": "fax"}, "channel"),
        ({"template": "not a slug"}, "template"),
    ],
)
def test_bad_query_parameters_are_field_errors(params, field):
    response = _client("reports:read").get("/api/v1/reports/channels/", params)
    assert response.status_code == 400, response.content
    assert field in _errors(response)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"end": "9999-12-31"}, "end"),
        ({"end": "0001-01-05"}, "end"),  # the default start, 29 days before, would not exist
        ({"start": "0001-01-01", "end": "0001-01-02"}, "start"),
        ({"start": "1999-12-31", "end": "2000-01-02"}, "start"),
    ],
)
@pytest.mark.parametrize("csv_format", [False, True])
def test_dates_out_of_range_are_field_errors_not_500s(params, field, csv_format):
    api = _client("reports:read")
    api.raise_request_exception = False
    extra = {"format": "csv"} if csv_format else {}
    response = api.get("/api/v1/reports/channels/", params | extra)
    assert response.status_code == 400, response.content
    if not csv_format:
        assert field in _errors(response)


def test_a_lone_surrogate_is_a_field_error():
    # %ED%A0%80 is U+D800 encoded as if it were a character: not UTF-8
    response = _client("reports:read").get("/api/v1/reports/channels/?start=%ED%A0%80")
    assert response.status_code == 400 and "start" in _errors(response)


def test_366_days_is_allowed():
    api = _client("reports:read")
    ok = api.get("/api/v1/reports/channels/", {"start": "2025-01-01", "end": "2026-01-01"})
    assert ok.status_code == 200


def test_the_link_report_needs_a_scope_and_a_bad_csv_query_is_still_a_400():
    api = _client("reports:read")
    response = api.get("/api/v1/reports/links/", RANGE)
    assert response.status_code == 400 and "journey" in _errors(response)
    bad = api.get("/api/v1/reports/links/", {"start": "x", "format": "csv"})
    assert bad.status_code == 400
    assert not AuditEntry.objects.filter(action="export").exists()
