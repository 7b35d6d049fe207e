"""Celery tasks: thin wrappers that load by id and call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from config import task_limits

from . import click_buffer, reconcile, services

# Declared once: late acks so a killed worker's task is redelivered (the claim in
# message_deliver makes redelivery harmless), and hard limits so nothing hangs forever.
DELIVERY_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "time_limit": 120,
    "soft_time_limit": 90,
    # A database hiccup (a lock timeout, a failover) before the claim: try again shortly.
    # After the claim the message is no longer `queued`, so a retry cannot send it twice.
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 2,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="messaging.deliver_message", **DELIVERY_TASK_OPTIONS)
def deliver_message(message_id: str) -> str:
    outcome = services.message_deliver(message_id=message_id)
    if outcome.retry_in is not None:
        # The backoff is short (seconds to minutes); if this enqueue is lost, the sweeper
        # re-queues the message once its lease runs out.
        services.enqueue_delivery(message_id, countdown=outcome.retry_in)
    return outcome.result


# Beat tasks: each run does a bounded slice and stops early near its soft limit; the next
# run (every SWEEP_INTERVAL_SECONDS) carries on.
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 300, "soft_time_limit": 240}


@shared_task(name="messaging.tasks.sweep_messages", **BEAT_TASK_OPTIONS)
def sweep_messages() -> dict[str, int]:
    return services.messages_sweep()


@shared_task(name="messaging.reconcile_unknown", **BEAT_TASK_OPTIONS)
def reconcile_unknown_messages() -> dict[str, int]:
    """Beat: ask the provider about `unknown` messages no status callback settled."""
    # A lookup is at most 3 provider requests, each bounded by the provider timeout.
    need = 3 * services.provider_call_seconds()
    return reconcile.unknown_messages_reconcile(has_time=lambda: task_limits.has_time(need))


@shared_task(name="messaging.flush_clicks", **BEAT_TASK_OPTIONS)
def flush_clicks() -> dict[str, int]:
    """Beat (every CLICK_FLUSH_SECONDS): buffered link clicks become touchpoints."""
    return click_buffer.clicks_flush()
