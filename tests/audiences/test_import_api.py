"""Imports API: multipart upload, validate, run, status, error report; scopes; 4xx."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.import_models import ContactImport
from audit.models import AuditEntry
from messaging.models import ConsentChange, Contact

from .test_api import client_with

pytestmark = pytest.mark.django_db

TEXT = (
    "Customer ID,E-mail,Mobile,Plan,SMS opt-in\n"
    "c-1,ada@example.com,+14155552671,pro,yes\n"
    "c-2,bad-email,+14155552672,free,no\n"
)
MAPPING = {
    "Customer ID": "external_id",
    "E-mail": "email",
    "Mobile": "phone",
    "Plan": "attributes.plan",
    "SMS opt-in": "consent.sms",
}


def upload(api, text=TEXT, mapping=MAPPING, **extra):
    body = {
        "file": SimpleUploadedFile("list.csv", text.encode(), content_type="text/csv"),
        "mapping": json.dumps(mapping),
        "consent_source": "checkout opt-in, 2026-10",
        **extra,
    }
    return api.post("/api/v1/imports/", body, format="multipart")


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def test_upload_validate_run_and_read_the_error_report(api, django_capture_on_commit_callbacks):
    response = upload(api)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["total_rows"]) == ("uploaded", 2)
    url = f"/api/v1/imports/{body['id']}/"

    assert api.post(url + "run/").status_code == 409  # validate first
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(url + "validate/").status_code == 202
    body = api.get(url).json()
    assert body["status"] == "validated"
    assert body["validation"]["would_create"] == 1
    assert body["validation"]["errors"] == [
        {"line": 3, "column": "E-mail", "message": "“bad-email” is not an email address."}
    ]
    assert not Contact.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(url + "run/").status_code == 202
    body = api.get(url).json()
    assert (body["status"], body["progress"], body["created_count"], body["error_count"]) == (
        "completed",
        1.0,
        1,
        1,
    )
    assert Contact.objects.get().attributes == {"plan": "pro"}
    assert ConsentChange.objects.get().note == "checkout opt-in, 2026-10"

    report = api.get(body["error_report_url"])
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert rows == [
        ["line", "column", "message"],
        ["3", "E-mail", "“bad-email” is not an email address."],
    ]
    assert AuditEntry.objects.filter(action="import_run").exists()
    assert api.post(url + "run/").status_code == 409  # completed


def test_unknown_columns_and_missing_consent_source_are_field_errors(api):
    response = upload(api, mapping={"E-mail": "email"}, consent_source="")
    assert response.status_code == 400
    errors = _errors(response)
    assert "Unknown column" in errors["mapping.Customer ID"]
    response = upload(api, consent_source="")
    assert response.status_code == 400
    assert "consent_source" in _errors(response)
    assert not ContactImport.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"mapping": "{not json"},
        {"mapping": "[1, 2]"},
        {"file": SimpleUploadedFile("x.csv", b"\xff\xfe\x00bad", content_type="text/csv")},
        {"file": SimpleUploadedFile("x.csv", b"", content_type="text/csv")},
        {"surprise": "field"},
    ],
)
def test_bad_uploads_are_400(api, body):
    response = upload(api, **body)
    assert response.status_code == 400, response.content
    assert not ContactImport.objects.exists()


def test_scopes():
    reader = client_with("imports:read")
    assert upload(reader).status_code == 403
    writer = client_with("imports:write")
    created = upload(writer)
    assert created.status_code == 201
    assert writer.get(f"/api/v1/imports/{created.json()['id']}/").status_code == 403
    assert reader.get(f"/api/v1/imports/{created.json()['id']}/").status_code == 200
    assert reader.get("/api/v1/imports/").json()["results"][0]["id"] == created.json()["id"]


def test_a_large_upload_passes_the_api_body_limit(api, settings):
    settings.API_MAX_BODY_BYTES = 1000
    rows = "".join(f"c-{n},c{n}@example.com,,pro,\n" for n in range(200))
    response = upload(api, text="Customer ID,E-mail,Mobile,Plan,SMS opt-in\n" + rows)
    assert response.status_code == 201, response.json()
    assert response.json()["total_rows"] == 200
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    assert upload(api, text="Customer ID,E-mail,Mobile,Plan,SMS opt-in\n" + rows).status_code == 413
