"""Celery tasks for outbound webhooks: thin wrappers over outbound.delivery."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from config import task_limits

from . import conf, delivery
from .checks import REQUEST_MARGIN_SECONDS

# Declared once. Late acks: a killed worker's task is redelivered, and the attempt counter it
# carries makes the redelivery a no-op once that attempt was claimed. The hard limit is well
# inside the claim's lease, so a hung task never overlaps its own retry.
DELIVER_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 60,
    "soft_time_limit": 45,
    # A database hiccup before the claim: try again shortly. After the claim the counter has
    # moved, so such a retry cannot send twice.
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 2,
    "retry_jitter": True,
    "max_retries": 5,
}
MAX_BATCHES = 10
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 120, "soft_time_limit": 100}
BATCH_SECONDS = 10.0


@shared_task(name="outbound.deliver_webhook", **DELIVER_TASK_OPTIONS)
def deliver_webhook(delivery_id: int, attempt: int = 0) -> str:
    """Make the next attempt of a delivery, if `attempt` attempts are all it has had."""
    # Claim and post only when the request's overall deadline (egress.post enforces it on the
    # whole request, however slowly the receiver answers) fits before the soft limit, with
    # room for the claim and the record; otherwise the attempt is untouched and its lease
    # brings it back.
    timeout = float(conf.get("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS"))
    task_limits.check(need=timeout + REQUEST_MARGIN_SECONDS, phase="the webhook request")
    return delivery.delivery_attempt(delivery_id=delivery_id, attempt=attempt)


@shared_task(name="outbound.dispatch_due_webhooks", **BEAT_TASK_OPTIONS)
def dispatch_due_webhooks() -> int:
    """Beat: claim due retries in bounded batches and queue one attempt each. Long waits live
    in next_attempt_at, never in Celery countdowns."""
    batch = int(conf.get("OUTBOUND_WEBHOOK_BATCH_SIZE"))
    claimed = 0
    for number in range(MAX_BATCHES):
        if number and not task_limits.has_time(BATCH_SECONDS):
            break  # the next beat claims the rest
        rows = delivery.deliveries_claim_due(
            limit=batch, lease_seconds=int(conf.get("OUTBOUND_WEBHOOK_LEASE_SECONDS"))
        )
        for delivery_id, attempts in rows:
            deliver_webhook.delay(delivery_id, attempts)
        claimed += len(rows)
        if len(rows) < batch:
            break
    return claimed
