"""Contact imports in the admin: upload with mapping errors on the form, validate, run,
the polled status and the error report."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.import_models import ContactImport
from journeys.staff_groups import ensure_staff_groups
from messaging.models import ConsentChange, Contact

pytestmark = pytest.mark.django_db

TEXT = b"external_id,email,Newsletter\nc-1,ada@example.com,yes\nc-2,nope,no\n"


@pytest.fixture
def marketer(client):
    ensure_staff_groups()
    user = User.objects.create_user("marketer", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing"))
    client.force_login(user)
    return user


def _add(client, mapping: dict, consent_source: str = ""):
    return client.post(
        "/admin/audiences/contactimport/add/",
        {
            "file": SimpleUploadedFile("list.csv", TEXT, content_type="text/csv"),
            "mapping": json.dumps(mapping),
            "consent_source": consent_source,
        },
    )


def test_marketer_uploads_validates_and_runs_an_import(
    client, marketer, django_capture_on_commit_callbacks
):
    refused = _add(client, {})
    assert refused.status_code == 200
    assert "Unknown column" in str(refused.context["adminform"].form.errors["mapping"])
    refused = _add(client, {"Newsletter": "consent.email"})
    assert "consent_source" in refused.context["adminform"].form.errors
    assert not ContactImport.objects.exists()

    response = _add(client, {"Newsletter": "consent.email"}, "newsletter form, 2026-10")
    assert response.status_code == 302
    contact_import = ContactImport.objects.get()
    assert (contact_import.uploaded_by, contact_import.total_rows) == (marketer, 2)
    page = client.get(f"/admin/audiences/contactimport/{contact_import.pk}/change/")
    assert b"Validate" in page.content

    base = f"/admin/audiences/contactimport/{contact_import.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(base + "validate/").status_code == 302
    contact_import.refresh_from_db()
    assert contact_import.validation["would_create"] == 1
    page = client.get(base + "change/")
    assert b"would be created" in page.content and b"Run import" in page.content

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(base + "run/").status_code == 302
    status = client.get(base + "status/").json()
    assert (status["status"], status["progress"], status["created"], status["errors"]) == (
        "completed",
        1.0,
        1,
        1,
    )
    assert Contact.objects.get().email == "ada@example.com"
    change = ConsentChange.objects.get()
    assert (change.changed_by, change.note) == (marketer, "newsletter form, 2026-10")
    report = b"".join(client.get(base + "errors.csv").streaming_content).decode()
    assert "3,email," in report
    page = client.get(base + "change/")
    assert page.status_code == 200 and b"Completed" in page.content
    assert b"Run import" not in page.content
    assert client.post(base + "change/", {}).status_code == 302  # saved as it is: no change


def test_a_user_without_the_permission_cannot_run_an_import(client):
    ensure_staff_groups()
    viewer = User.objects.create_user("v", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Support"))
    client.force_login(viewer)
    contact_import = ContactImport.objects.create(file="x.csv", status="validated")
    assert (
        client.post(f"/admin/audiences/contactimport/{contact_import.pk}/run/").status_code == 403
    )
    assert (
        client.get(f"/admin/audiences/contactimport/{contact_import.pk}/status/").status_code == 403
    )
    contact_import.refresh_from_db()
    assert contact_import.status == "validated"


def test_changing_the_mapping_asks_for_a_new_validation(client, marketer):
    _add(client, {"Newsletter": "ignore"})
    contact_import = ContactImport.objects.get()
    contact_import.status, contact_import.validation = "validated", {"rows": 2}
    contact_import.save()
    url = f"/admin/audiences/contactimport/{contact_import.pk}/change/"
    refused = client.post(url, {"mapping": json.dumps({"Newsletter": "nonsense"})})
    assert refused.status_code == 200
    assert "Newsletter: Unknown target" in str(refused.context["adminform"].form.errors)
    changed = client.post(url, {"mapping": json.dumps({"Newsletter": "attributes.news:boolean"})})
    assert changed.status_code == 302
    contact_import.refresh_from_db()
    assert contact_import.mapping == {"Newsletter": "attributes.news:boolean"}
    assert (contact_import.status, contact_import.validation) == ("uploaded", {})
