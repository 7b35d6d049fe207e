"""Celery tasks for broadcasts: thin wrappers over campaigns.services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from config import task_limits

from . import services

logger = logging.getLogger(__name__)

SEND_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 300,
    "soft_time_limit": 240,
}
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 120, "soft_time_limit": 100}
BATCH_SECONDS = 10.0  # one claim round: a few statements per sending broadcast
MAX_ROUNDS_PER_CALL = 4
CHAIN_KEY = "campaigns:dispatch-chain"


@shared_task(name="campaigns.send_recipients", **SEND_TASK_OPTIONS)
def send_recipients(recipient_ids: list[int], claim_next: bool = False) -> int:
    services.recipients_send(recipient_ids=recipient_ids)
    if claim_next:
        try:
            dispatch_due.delay(chained=True)
        except Exception:
            logger.warning("Could not queue the next broadcast claim", exc_info=True)
    return len(recipient_ids)


def _chain_goes_on(chained: bool) -> bool:
    """At most one chain at a time (as journeys.tasks.schedule_due)."""
    if chained:
        cache.set(CHAIN_KEY, 1, timeout=settings.BROADCAST_LEASE_SECONDS)
        return True
    return cache.add(CHAIN_KEY, 1, timeout=settings.BROADCAST_LEASE_SECONDS)


@shared_task(name="campaigns.dispatch_due", **BEAT_TASK_OPTIONS)
def dispatch_due(chained: bool = False) -> int:
    """Beat (every BROADCAST_DISPATCH_INTERVAL_SECONDS): claim due recipients of every
    sending broadcast and fan them out in chunks of BROADCAST_CHUNK. An unthrottled backlog
    (a claim came back full) claims again, up to MAX_ROUNDS_PER_CALL rounds; after the last
    the final task it queued calls this again once it has run, so a backlog drains at the
    workers' pace without claiming more than they can send within the lease."""
    chunk = settings.BROADCAST_CHUNK
    claimed = 0
    for number in range(1, MAX_ROUNDS_PER_CALL + 1):
        if number > 1 and not task_limits.has_time(BATCH_SECONDS):
            break
        claims = services.broadcasts_dispatch()
        claimed += sum(len(c.recipient_ids) for c in claims)
        full = any(c.full for c in claims)
        chain = full and number == MAX_ROUNDS_PER_CALL and _chain_goes_on(chained)
        tasks = [
            c.recipient_ids[start : start + chunk]
            for c in claims
            for start in range(0, len(c.recipient_ids), chunk)
        ]
        for index, ids in enumerate(tasks):
            send_recipients.delay(ids, claim_next=chain and index == len(tasks) - 1)
        if not full:
            if chained:
                cache.delete(CHAIN_KEY)
            break
    return claimed


@shared_task(name="campaigns.choose_winners", **BEAT_TASK_OPTIONS)
def choose_winners() -> int:
    """Beat (every BROADCAST_WINNER_INTERVAL_SECONDS): for every test-then-winner broadcast
    whose wait is over, choose the winning variant and release the rest with it (one
    transaction each; the dispatcher sends them on its next tick)."""
    return services.broadcasts_choose_winners()
