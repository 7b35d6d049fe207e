"""Celery tasks for journeys: thin wrappers over the engine."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from . import engine, services

ADVANCE_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 300,
    "soft_time_limit": 240,
}
CHUNK = 50
logger = logging.getLogger(__name__)


@shared_task(name="journeys.advance_enrollments", **ADVANCE_TASK_OPTIONS)
def advance_enrollments(enrollment_ids: list[int]) -> int:
    for enrollment_id in enrollment_ids:
        engine.enrollment_advance(enrollment_id=enrollment_id)
    return len(enrollment_ids)


@shared_task(name="journeys.schedule_due", ignore_result=True, time_limit=120)
def schedule_due() -> int:
    """Beat: claim due enrollments in bounded batches and fan them out to workers. Long waits
    live in next_run_at, never in Celery ETAs."""
    claimed = 0
    for _ in range(10):
        ids = engine.enrollments_claim_due(
            limit=settings.SCHEDULER_BATCH_SIZE, lease_seconds=settings.SCHEDULER_LEASE_SECONDS
        )
        for start in range(0, len(ids), CHUNK):
            advance_enrollments.delay(ids[start : start + CHUNK])
        claimed += len(ids)
        if len(ids) < settings.SCHEDULER_BATCH_SIZE:
            break
    return claimed


@shared_task(name="journeys.process_events", **ADVANCE_TASK_OPTIONS)
def process_events() -> int:
    """Apply the events the API accepted (kicked on their commit)."""
    services.events_kick_taken()
    return services.events_apply_pending()


@shared_task(name="journeys.sweep_events", ignore_result=True, time_limit=120)
def sweep_events() -> int:
    """Beat: apply accepted events whose kick was lost (a crash between commit and publish,
    a broker outage) once they are EVENT_SWEEP_AFTER_SECONDS old."""
    applied = services.events_apply_pending(older_than=settings.EVENT_SWEEP_AFTER_SECONDS)
    if applied:
        logger.warning("Swept %d accepted events whose kick was lost", applied)
    return applied
