"""Two workers at once, on real PostgreSQL connections: the dispatcher's claims never overlap,
and two tasks for one attempt send it once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from outbound.delivery import deliveries_claim_due, delivery_attempt
from outbound.models import WebhookDelivery, WebhookSubscription
from outbound.payloads import ping

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SKIP LOCKED and concurrent row locks need PostgreSQL (SQLite has one writer)",
    ),
]


def pending(subscription: WebhookSubscription, count: int) -> list[WebhookDelivery]:
    """Pending deliveries whose first kick has not run (with autocommit, on-commit hooks
    would run at once and send them)."""
    return WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            subscription=subscription,
            event_type="webhook.test",
            payload=ping(subscription_id=subscription.pk),
            next_attempt_at=timezone.now(),
        )
        for _ in range(count)
    )


def run_together(target, count: int = 2) -> None:
    barrier = threading.Barrier(count)

    def run() -> None:
        try:
            barrier.wait()
            target()
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_dispatchers_claim_each_due_delivery_once(receiver, subscribe):
    subscription = subscribe("message.sent")
    deliveries = pending(subscription, 60)
    later = timezone.now() + timezone.timedelta(hours=1)
    claims: list[int] = []
    lock = threading.Lock()

    def claim_until_empty() -> None:
        for _ in range(30):  # bounded: a broken lease would otherwise claim forever
            rows = deliveries_claim_due(now=later, limit=7, lease_seconds=600)
            if not rows:
                return
            with lock:
                claims.extend(pk for pk, _ in rows)

    run_together(claim_until_empty)

    assert Counter(claims) == Counter(d.pk for d in deliveries)


def test_two_tasks_for_one_attempt_send_it_once(receiver, subscribe):
    subscription = subscribe("message.sent")
    [delivery] = pending(subscription, 1)
    results: list[str] = []

    run_together(lambda: results.append(delivery_attempt(delivery_id=delivery.pk, attempt=0)))

    # The loser sends nothing: it finds the attempt claimed ("stale") or, when the winner has
    # already finished by the time it reads the row, the delivery done.
    winner, loser = sorted(results, key=lambda r: r != "succeeded")
    assert winner == "succeeded"
    assert loser in ("stale", "already succeeded")
    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (delivery.status, delivery.attempts, delivery.attempt_log.count()) == ("succeeded", 1, 1)
