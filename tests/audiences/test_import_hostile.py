"""Hostile import files, mappings and preview bodies: a 4xx with field-level errors (API) or
a form error (admin), never a 500, nothing half-written and no stored file left behind;
imports and static-list removals mark contacts for the live segments; the stall sweeper
re-queues every kind of lost task; validation through the API is audited."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audiences import import_tasks
from audiences.import_models import ContactImport
from audiences.imports import reader
from audiences.imports.reader import MAX_COLUMNS, MAX_LINE_CHARS, FileError
from audiences.live import segments_apply_changed
from audiences.models import SegmentDirtyContact, SegmentMembership
from audiences.static_lists import static_list_apply
from audit.models import AuditEntry
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Contact
from tests.factories import ContactFactory

from .conftest import segment
from .import_helpers import csv_file, imported, uploaded
from .test_membership import staff

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/audiences/segment/preview/"
ADMIN_ADD = "/admin/audiences/contactimport/add/"


def stored_files() -> set[str]:
    location = ContactImport._meta.get_field("file").storage.location
    return {os.path.join(folder, name) for folder, _, names in os.walk(location) for name in names}


def upload(api, data: bytes, mapping: str | dict = "", **extra):
    body = {
        "file": SimpleUploadedFile("list.csv", data, content_type="text/csv"),
        "mapping": mapping if isinstance(mapping, str) else json.dumps(mapping),
        **extra,
    }
    return api.post("/api/v1/imports/", body, format="multipart")


def errors_of(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


@pytest.fixture
def marketer(client):
    ensure_staff_groups()
    user = User.objects.create_user("marketer", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing"))
    client.force_login(user)
    return user


# --- 1. One huge row, too many columns, admin upload size ---------------------------------


def test_a_line_over_the_limit_is_a_file_error_not_a_giant_list(api):
    before = stored_files()
    response = upload(api, b"email" + b"," * (MAX_LINE_CHARS + 10))  # no newline at all
    assert response.status_code == 400
    assert "Line 1" in errors_of(response)["file"]
    assert not ContactImport.objects.exists()
    assert stored_files() == before


def test_a_data_row_over_the_limit_is_refused_by_every_reader():
    text = "email\na@example.com\n" + "," * (MAX_LINE_CHARS + 1) + "\n"
    for read in (reader.count_rows, lambda f: list(reader.batches(f, skip=0, size=10))):
        with pytest.raises(FileError, match="Line 3"):
            read(csv_file(text))


def test_a_row_cannot_grow_past_the_limit_over_many_quoted_lines():
    # Each physical line is short, but the record goes on: its cells are bounded too.
    line = '"\n",' + "," * 1000
    text = "email\n" + line * (MAX_LINE_CHARS // len(line) + 2) + "\n"
    with pytest.raises(FileError, match="longer than"):
        reader.count_rows(csv_file(text))


def test_more_columns_than_the_limit_are_refused(api):
    header = ",".join(f"c{n}" for n in range(MAX_COLUMNS + 1))
    response = upload(api, f"email,{header}\n".encode())
    assert response.status_code == 400
    assert f"{MAX_COLUMNS:,}" in errors_of(response)["file"]
    with pytest.raises(FileError, match="columns"):
        reader.count_rows(csv_file("email\n" + "," * (MAX_COLUMNS + 1) + "\n"))


def test_the_admin_upload_has_the_import_size_limit(client, marketer, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    data = b"email\n" + b"a@example.com\n" * 20
    response = client.post(ADMIN_ADD, {"file": SimpleUploadedFile("l.csv", data), "mapping": "{}"})
    assert response.status_code == 200
    assert "100 bytes" in str(response.context["adminform"].form.errors["file"])
    assert not ContactImport.objects.exists()
    seg = segment("vip", kind="static")
    response = client.post(
        f"/admin/audiences/segment/{seg.pk}/static-list/",
        {"file": SimpleUploadedFile("l.csv", data), "operation": "add"},
    )
    assert response.status_code == 200
    assert "100 bytes" in str(response.context["form"].errors["file"])


# --- 2. Deep JSON, NUL bytes, surrogates in the mapping and the preview --------------------


def test_a_deeply_nested_mapping_is_a_400_at_mapping(api):
    response = upload(api, b"email\na@example.com\n", mapping="[" * 100000)
    assert response.status_code == 400
    assert "mapping" in errors_of(response)
    deep = "{}"
    for _ in range(40):
        deep = '{"a": ' + deep + "}"
    response = upload(api, b"email\na@example.com\n", mapping=deep)
    assert response.status_code == 400
    assert "nested" in errors_of(response)["mapping.a"]


def test_nul_bytes_in_the_mapping_are_a_400(api):
    response = upload(api, b"email\na@example.com\n", mapping={"email": "email\u0000"})
    assert response.status_code == 400
    assert "NUL" in errors_of(response)["mapping.email"]
    response = upload(api, b"email\na@example.com\n", mapping={"e\u0000": "ignore"})
    assert response.status_code == 400
    assert "NUL" in errors_of(response)["mapping"]


def test_the_preview_refuses_deep_json_and_nul_bytes_with_400(client):
    client.force_login(staff("marketing"))
    deep = client.post(PREVIEW, "[" * 100000, content_type="application/json")
    assert deep.status_code == 400
    assert deep.json()["errors"]["__all__"]
    answer = client.post(
        PREVIEW, json.dumps({"definition": "[" * 100000}), content_type="application/json"
    )
    assert answer.status_code == 400
    assert "definition" in answer.json()["errors"]
    nul = {"definition": {"field": "timezone", "op": "eq", "value": "a\u0000"}}
    answer = client.post(PREVIEW, json.dumps(nul), content_type="application/json")
    assert answer.status_code == 400
    assert "NUL" in answer.json()["errors"]["definition.value"][0]
    as_text = {"definition": json.dumps(nul["definition"])}
    answer = client.post(PREVIEW, json.dumps(as_text), content_type="application/json")
    assert answer.status_code == 400
    assert "NUL" in answer.json()["errors"]["definition.value"][0]


# --- 3. NUL bytes in header cells and static-list keys; no file left on refusal -----------


def test_a_nul_byte_in_a_header_cell_is_a_400_and_leaves_no_file(api):
    before = stored_files()
    response = upload(api, b'email,"a\x00b"\nx@example.com,1\n', mapping={"a\u0000b": "ignore"})
    assert response.status_code == 400
    assert "file" in errors_of(response) or "mapping" in errors_of(response)
    assert not ContactImport.objects.exists()
    assert stored_files() == before
    with pytest.raises(FileError, match="NUL"):
        reader.read_header(csv_file('email,"a\x00b"\n'))


def test_the_stored_file_is_deleted_when_creating_the_import_fails(monkeypatch):
    before = stored_files()

    def broken_save(self, *args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ContactImport, "save", broken_save)
    with pytest.raises(RuntimeError):
        uploaded("email\na@example.com\n")
    assert stored_files() == before


def test_a_nul_byte_in_a_static_list_key_is_a_row_error():
    seg = segment("vip", kind="static")
    ContactFactory(external_id="x")
    result = static_list_apply(
        segment=seg,
        binary=csv_file('external_id\nx\n"y\x00"\n'),
        operation="add",
        now=timezone.now(),
    )
    assert (result.rows, result.changed, result.unmatched) == (2, 1, 1)
    assert "Line 3" in result.errors[0] and "NUL" in result.errors[0]


# --- 4. Imports and static-list removals mark contacts for the live segments -------------


def test_an_import_puts_new_and_updated_contacts_in_live_segments():
    pros = segment("pros", {"attribute": "plan", "op": "eq", "value": "pro"})
    old = ContactFactory(external_id="old", attributes={"plan": "free"})
    ContactFactory(external_id="same", attributes={"plan": "free"})
    SegmentDirtyContact.objects.all().delete()
    imported(
        "external_id,plan\nnew,pro\nold,pro\nsame,free\n",
        mapping={"plan": "attributes.plan"},
    )
    marked = set(SegmentDirtyContact.objects.values_list("contact_id", flat=True))
    new = Contact.objects.get(external_id="new")
    assert marked == {new.pk, old.pk}  # the unchanged row marks nothing
    segments_apply_changed()
    assert set(
        SegmentMembership.objects.filter(segment=pros).values_list(
            "contact__external_id", flat=True
        )
    ) == {"new", "old"}


def test_an_import_marks_in_a_fixed_number_of_statements(django_assert_max_num_queries):
    from django.db import connection

    from audiences.imports import import_run, import_transition

    from .import_helpers import validated

    def run(n: int) -> int:
        Contact.objects.all().delete()
        text = "external_id,email\n" + "".join(f"q{n}-{i},q{i}@example.com\n" for i in range(n))
        contact_import = validated(text)
        import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            import_run(contact_import=contact_import)
        assert (
            SegmentDirtyContact.objects.filter(
                contact_id__in=Contact.objects.filter(external_id__startswith=f"q{n}-").values("pk")
            ).count()
            == n
        )
        marking = [q for q in queries.captured_queries if "segmentdirtycontact" in q["sql"]]
        return len(marking), len(queries)

    small, large = run(60), run(150)
    assert small[0] == large[0] >= 1  # the marking: a fixed number of statements
    if connection.vendor == "postgresql":
        # The whole run too: new contacts go in by COPY (audiences.imports.batch.COPY_FROM);
        # SQLite's multi-row INSERT is split by its parameter limit.
        assert small[1] == large[1]


def test_removing_from_a_static_list_marks_the_removed_contacts():
    vip = segment("vip", kind="static")
    vip_pros = segment("vip-pros", {"all": [{"segment": "vip"}]})
    a = ContactFactory(external_id="a")
    static_list_apply(
        segment=vip, binary=csv_file("external_id\na\n"), operation="add", now=timezone.now()
    )
    segments_apply_changed()
    assert SegmentMembership.objects.filter(segment=vip_pros, contact=a).exists()
    SegmentDirtyContact.objects.all().delete()
    static_list_apply(
        segment=vip, binary=csv_file("external_id\na\n"), operation="remove", now=timezone.now()
    )
    assert list(SegmentDirtyContact.objects.values_list("contact_id", flat=True)) == [a.pk]
    segments_apply_changed()
    assert not SegmentMembership.objects.filter(segment=vip_pros, contact=a).exists()


# --- 5. A bad byte far down the file is a form error with its line ------------------------


def test_the_admin_reports_a_bad_byte_on_a_late_line_as_a_form_error(client, marketer):
    data = b"email\n" + b"".join(b"a%d@example.com\n" % n for n in range(10)) + b"\xff\xfe\n"
    before = stored_files()
    response = client.post(ADMIN_ADD, {"file": SimpleUploadedFile("l.csv", data), "mapping": "{}"})
    assert response.status_code == 200
    assert "Line 12" in str(response.context["adminform"].form.errors["file"])
    assert not ContactImport.objects.exists()
    assert stored_files() == before


# --- 6. The stall sweeper re-queues lost validations and queued runs ----------------------


@pytest.fixture
def queued(monkeypatch):
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(import_tasks.validate_import, "delay", lambda pk: sent.append(("v", pk)))
    monkeypatch.setattr(import_tasks.run_import, "delay", lambda pk: sent.append(("r", pk)))
    return sent


def _stalled(status: str) -> ContactImport:
    contact_import = uploaded("email\na@example.com\n")
    ContactImport.objects.filter(pk=contact_import.pk).update(
        status=status, updated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    return contact_import


def test_lost_validations_and_queued_runs_are_queued_again(
    queued, django_capture_on_commit_callbacks
):
    validating, waiting, running = (_stalled(s) for s in ("validating", "queued", "running"))
    fresh = uploaded("email\nb@example.com\n")
    ContactImport.objects.filter(pk=fresh.pk).update(status="queued")  # just queued: wait
    with django_capture_on_commit_callbacks(execute=True):
        assert import_tasks.resume_stalled_imports() == 3
    assert sorted(queued) == sorted([("v", validating.pk), ("r", waiting.pk), ("r", running.pk)])
    statuses = dict(ContactImport.objects.values_list("pk", "status"))
    assert statuses[validating.pk] == "validating" and statuses[running.pk] == "queued"
    # Queued again: not picked up a second time until it stalls again.
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert import_tasks.resume_stalled_imports() == 0
    assert queued == []


def test_one_import_that_cannot_be_resumed_does_not_stop_the_others(
    queued, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    from audiences.imports import ImportStateError, import_take_stalled

    broken, running = _stalled("running"), _stalled("running")

    def take(*, import_id, older_than):
        if import_id == broken.pk:
            raise ImportStateError("changed meanwhile")
        return import_take_stalled(import_id=import_id, older_than=older_than)

    monkeypatch.setattr(import_tasks, "import_take_stalled", take)
    with django_capture_on_commit_callbacks(execute=True):
        assert import_tasks.resume_stalled_imports() == 1
    assert queued == [("r", running.pk)]
    assert f"Stalled import {broken.pk}" in caplog.text
    # A finished import found by a racing sweep is simply left alone.
    done = _stalled("completed")
    assert import_take_stalled(import_id=done.pk, older_than=dt.timedelta(0)) is None


# --- 7. Validation through the API is audited -------------------------------------------


def test_validate_through_the_api_is_audited(api, queued):
    created = upload(api, b"email\na@example.com\n")
    assert created.status_code == 201
    pk = created.json()["id"]
    assert api.post(f"/api/v1/imports/{pk}/validate/").status_code == 202
    entry = AuditEntry.objects.get(action="import_validate")
    assert entry.object_id == str(pk)
