"""A contact import end to end on a real Celery worker and the real broker: the API
uploads, the worker validates and runs it in batches (continuing itself), the status
endpoint reports progress; a stalled import is resumed by the beat sweeper from its
checkpoint."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audiences.import_models import ContactImport
from audiences.import_tasks import resume_stalled_imports
from config.celery import app as celery_app
from messaging.models import ApiKey, Contact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROWS = 250


@pytest.fixture
def worker():
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as running:
        yield running


def wait_for(pk: int, statuses: set[str], timeout: float = 60.0) -> ContactImport:
    deadline = time.monotonic() + timeout
    while True:
        contact_import = ContactImport.objects.get(pk=pk)
        if contact_import.status in statuses or time.monotonic() > deadline:
            return contact_import
        time.sleep(0.1)


def test_the_worker_validates_and_runs_an_uploaded_file(worker, settings):
    settings.IMPORT_BATCH_SIZE = 40  # several batches, each its own checkpoint
    _, key = ApiKey.objects.create_key(name="w", scopes=["imports:read", "imports:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    text = "external_id,email,attributes.visits:number\n" + "".join(
        f"w-{n},w{n}@example.com,{n}\n" for n in range(ROWS)
    )
    created = api.post(
        "/api/v1/imports/",
        {"file": SimpleUploadedFile("w.csv", text.encode())},
        format="multipart",
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert api.post(f"/api/v1/imports/{pk}/validate/").status_code == 202
    validated = wait_for(pk, {"validated", "failed"})
    assert validated.validation["would_create"] == ROWS, validated.validation
    assert api.post(f"/api/v1/imports/{pk}/run/").status_code == 202
    done = wait_for(pk, {"completed", "failed"})
    assert (done.status, done.created_count, done.processed_rows) == ("completed", ROWS, ROWS)
    assert Contact.objects.filter(external_id__startswith="w-").count() == ROWS
    assert Contact.objects.get(external_id="w-7").attributes == {"visits": 7}
    assert api.get(f"/api/v1/imports/{pk}/").json()["progress"] == 1.0


def test_a_stalled_run_is_resumed_from_its_checkpoint(worker, settings):
    from tests.audiences.import_helpers import validated

    settings.IMPORT_BATCH_SIZE = 40
    text = "external_id\n" + "".join(f"s-{n}\n" for n in range(100))
    contact_import = validated(text)
    # As if a worker died after committing the first 40 rows: running, checkpoint at 40.
    Contact.objects.bulk_create([Contact(external_id=f"s-{n}") for n in range(40)])
    ContactImport.objects.filter(pk=contact_import.pk).update(
        status="running",
        processed_rows=40,
        created_count=40,
        updated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    assert resume_stalled_imports() == 1
    done = wait_for(contact_import.pk, {"completed", "failed"})
    assert (done.status, done.processed_rows, done.created_count) == ("completed", 100, 100)
    assert Contact.objects.filter(external_id__startswith="s-").count() == 100
