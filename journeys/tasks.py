"""Celery tasks for journeys: thin wrappers over the engine."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import engine

ADVANCE_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 300,
    "soft_time_limit": 240,
}
CHUNK = engine.ADVANCE_BATCH  # ids per advance_enrollments task: one transaction


@shared_task(name="journeys.advance_enrollments", **ADVANCE_TASK_OPTIONS)
def advance_enrollments(enrollment_ids: list[int]) -> int:
    engine.enrollments_advance(enrollment_ids=enrollment_ids)
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
