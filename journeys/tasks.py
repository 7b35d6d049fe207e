"""Celery tasks for journeys: thin wrappers over the engine."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from config import task_limits

from . import engine, services

logger = logging.getLogger(__name__)

ADVANCE_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 300,
    "soft_time_limit": 240,
}
CHUNK = engine.ADVANCE_BATCH  # ids per advance_enrollments task: one transaction
# Beat tasks: a bounded slice per run, stopping early near the soft limit.
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 120, "soft_time_limit": 100}
# One claim and its fan-out: a few statements, each under TASK_STATEMENT_TIMEOUT_SECONDS.
BATCH_SECONDS = 10.0


# The one scheduler chain (see schedule_due): held while it runs, for at most a lease.
CHAIN_KEY = "journeys:scheduler-chain"
MAX_BATCHES_PER_CALL = 10


@shared_task(name="journeys.advance_enrollments", **ADVANCE_TASK_OPTIONS)
def advance_enrollments(enrollment_ids: list[int], claim_next: bool = False) -> int:
    engine.enrollments_advance(enrollment_ids=enrollment_ids)
    if claim_next:
        try:
            schedule_due.delay(chained=True)
        except Exception:
            # This batch is done; the beat claims the rest, and starts a new chain once
            # this one's key has expired.
            logger.warning("Could not queue the next scheduler claim", exc_info=True)
    return len(enrollment_ids)


def _chain_goes_on(chained: bool) -> bool:
    """At most one chain at a time: a beat call starts one only if none holds the key; the
    chain renews it. If its last task is lost, the key expires with the leases."""
    if chained:
        cache.set(CHAIN_KEY, 1, timeout=settings.SCHEDULER_LEASE_SECONDS)
        return True
    return cache.add(CHAIN_KEY, 1, timeout=settings.SCHEDULER_LEASE_SECONDS)


@shared_task(name="journeys.schedule_due", **BEAT_TASK_OPTIONS)
def schedule_due(chained: bool = False) -> int:
    """Beat: claim due enrollments in bounded batches and fan them out to workers. Long waits
    live in next_run_at, never in Celery ETAs.

    A call claims at most MAX_BATCHES_PER_CALL batches. When it stops there with more due,
    the last task it queued calls it again once it has run (`claim_next`), so a backlog
    drains at the workers' pace, not at one bound per beat interval, and no more is claimed
    than the workers have nearly finished (claims past what they do within the lease would
    expire and be claimed twice)."""
    size = settings.SCHEDULER_BATCH_SIZE
    claimed = 0
    for number in range(1, MAX_BATCHES_PER_CALL + 1):
        if number > 1 and not task_limits.has_time(BATCH_SECONDS):
            break  # the next beat (or chain) claims the rest
        ids = engine.enrollments_claim_due(
            limit=size, lease_seconds=settings.SCHEDULER_LEASE_SECONDS
        )
        claimed += len(ids)
        full = len(ids) == size
        chain = full and number == MAX_BATCHES_PER_CALL and _chain_goes_on(chained)
        starts = range(0, len(ids), CHUNK)
        for start in starts:
            last = start == starts[-1]
            advance_enrollments.delay(ids[start : start + CHUNK], claim_next=chain and last)
        if not full:
            if chained:
                cache.delete(CHAIN_KEY)
            break
    return claimed


@shared_task(name="journeys.process_events", **ADVANCE_TASK_OPTIONS)
def process_events() -> int:
    """Apply the events the API accepted (kicked on their commit)."""
    services.events_kick_taken()
    return services.events_apply_pending()


@shared_task(name="journeys.sweep_events", **BEAT_TASK_OPTIONS)
def sweep_events() -> int:
    """Beat: apply accepted events whose kick was lost (a crash between commit and publish,
    a broker outage) once they are EVENT_SWEEP_AFTER_SECONDS old."""
    applied = services.events_apply_pending(older_than=settings.EVENT_SWEEP_AFTER_SECONDS)
    if applied:
        logger.warning("Swept %d accepted events whose kick was lost", applied)
    return applied
