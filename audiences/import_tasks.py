"""Celery tasks of contact imports: thin wrappers that load by id and call the services.
Registered through audiences/tasks.py (Celery autodiscovers `tasks` modules only)."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from config import task_limits

from .import_models import ContactImport
from .imports import (
    import_run,
    import_take_stalled,
    import_transition,
    import_validate,
    imports_stalled,
)

logger = logging.getLogger(__name__)

# A run stops between batches when its soft limit nears and queues the rest: no run is
# long, and a crash loses at most one uncommitted batch.
IMPORT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 900, "soft_time_limit": 840}
BATCH_SECONDS = 60.0  # the worst case of one batch, kept free before the soft limit


@shared_task(name="audiences.validate_import", **IMPORT_TASK_OPTIONS)
def validate_import(import_id: int) -> None:
    contact_import = ContactImport.objects.filter(pk=import_id).first()
    if contact_import is not None and contact_import.status == ContactImport.Status.VALIDATING:
        import_validate(contact_import=contact_import)


@shared_task(name="audiences.run_import", **IMPORT_TASK_OPTIONS)
def run_import(import_id: int) -> None:
    contact_import = ContactImport.objects.filter(pk=import_id).first()
    if contact_import is None:
        return
    more = import_run(
        contact_import=contact_import, keep_going=lambda: task_limits.has_time(BATCH_SECONDS)
    )
    if more:
        run_import.delay(import_id)


@shared_task(
    name="audiences.resume_stalled_imports", ignore_result=True, time_limit=60, soft_time_limit=50
)
def resume_stalled_imports() -> int:
    """Beat: an import whose task was lost (validating, queued, or running with its
    checkpoint standing still for IMPORT_STALL_SECONDS) gets its task queued again; a run
    continues after its last committed batch. Each import on its own: one that fails is
    logged and the others are still resumed. Returns how many were queued again."""
    older_than = dt.timedelta(seconds=settings.IMPORT_STALL_SECONDS)
    resumed = 0
    for import_id in imports_stalled(older_than=older_than):  # imports: a handful at most
        try:
            with transaction.atomic():
                status = import_take_stalled(import_id=import_id, older_than=older_than)
                if status == ContactImport.Status.VALIDATING:
                    transaction.on_commit(lambda pk=import_id: validate_import.delay(pk))
                elif status == ContactImport.Status.QUEUED:
                    queue_run(import_id)
        except Exception:
            logger.exception("Stalled import %s could not be queued again", import_id)
            continue
        resumed += status is not None
    return resumed


def queue_validation(contact_import: ContactImport) -> ContactImport:
    """Start the validation pass (in a worker, once the status change is committed)."""
    import_transition(contact_import=contact_import, to=ContactImport.Status.VALIDATING)
    transaction.on_commit(lambda: validate_import.delay(contact_import.pk))
    return contact_import


def queue_run(import_id: int) -> None:
    transaction.on_commit(lambda: run_import.delay(import_id))


def start_run(contact_import: ContactImport) -> ContactImport:
    """Queue a validated import's run."""
    import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
    queue_run(contact_import.pk)
    return contact_import
