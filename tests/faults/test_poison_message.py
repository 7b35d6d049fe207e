"""A poison message: delivering it kills the worker process, every time (a test-only adapter,
tests/faults/poison_settings.py, SIGKILLs its own process). Nothing may loop forever.

- Killed after the claim (mid provider call): DESIGN step 4 says such a message is never sent
  again blindly — the redelivered task finds it `sending` and leaves it; the sweeper parks it
  as `unknown` with the reason, for a status callback to settle. One crash, no retry.
- Killed before the claim: the message is still `queued`, so every redelivery crashes again.
  It must stop after MESSAGE_MAX_ATTEMPTS and end `failed` with a reason (nothing was sent).

Other messages keep flowing meanwhile."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from messaging.models import Contact, Message
from messaging.services import message_create

from .conftest import (
    audit,
    phone,
    purge_broker,
    summary,
    touchline_env,
    wait_until,
)
from .poison_settings import POISON_AFTER_CLAIM, POISON_BEFORE_CLAIM

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

MAX_ATTEMPTS = 3
HEALTHY = 20


def crashes(log: Path) -> Counter:
    if not log.exists():
        return Counter()
    return Counter(tuple(line.split()[:2]) for line in log.read_text().splitlines() if line)


def start_poisoned_cluster(settings, cluster, simulators, tmp_path):
    sim = simulators(callbacks=False)
    purge_broker(settings.CELERY_BROKER_URL)
    log = tmp_path / "crashes.log"
    env = touchline_env(
        sim,
        DJANGO_SETTINGS_MODULE="tests.faults.poison_settings",
        FAULTS_CRASH_LOG=log,
        MESSAGE_MAX_ATTEMPTS=MAX_ATTEMPTS,
    )
    cluster.beat(env)
    worker = cluster.worker(env, pool="prefork", concurrency=2)
    cluster.wait_ready(worker)
    return sim, log, worker


def send(i: int, body: str) -> Message:
    contact = Contact.objects.create(external_id=f"p-{i}", phone=phone(i), first_name="P")
    message, _ = message_create(contact=contact, channel="sms", body=body)
    return message


def test_poison_after_the_claim_is_parked_unknown_after_one_crash(
    settings, cluster, simulators, tmp_path
):
    sim, log, worker = start_poisoned_cluster(settings, cluster, simulators, tmp_path)
    poison = send(0, f"{POISON_AFTER_CLAIM} hello")
    healthy = [send(i, f"Hello {i}") for i in range(1, HEALTHY + 1)]
    wait_until(
        lambda: Message.objects.get(pk=poison.pk).status == "unknown",
        timeout=60,
        what="the poison message to be parked",
        state=lambda: (Message.objects.get(pk=poison.pk).status, crashes(log)),
    )
    time.sleep(8)  # long enough for any redelivery or re-queue to crash again
    poison.refresh_from_db()
    counted = sum(crashes(log).values())
    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in healthy], status="sent").count()
        == HEALTHY,
        timeout=60,
        what="the healthy messages",
    )
    result = audit(sim)
    summary(
        "poison_after_claim",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=result.in_flight,
        unknown=result.statuses["unknown"],
        kills=counted,
        poison_status=poison.status,
        poison_attempts=poison.attempts,
        provider_requests_for_poison=result.requests[str(poison.pk)],
    )
    assert counted == 1, crashes(log)
    assert poison.status == "unknown"
    assert poison.attempts == 1
    assert "worker stopped" in poison.error_message, poison.error_message
    assert result.requests[str(poison.pk)] == 0
    assert result.problems() == []
    assert worker.running(), "the worker's parent survived its child's death"


def test_poison_before_the_claim_stops_after_max_attempts(settings, cluster, simulators, tmp_path):
    sim, log, _worker = start_poisoned_cluster(settings, cluster, simulators, tmp_path)
    poison = send(0, f"{POISON_BEFORE_CLAIM} hello")
    healthy = [send(i, f"Hello {i}") for i in range(1, HEALTHY + 1)]
    limit = 5 * MAX_ATTEMPTS

    def settled_or_looping() -> bool:
        status = Message.objects.get(pk=poison.pk).status
        return status not in ("queued", "sending") or sum(crashes(log).values()) >= limit

    wait_until(
        settled_or_looping,
        timeout=60,
        what="the poison message to settle",
        state=lambda: (Message.objects.get(pk=poison.pk).status, sum(crashes(log).values())),
    )
    time.sleep(3)
    poison.refresh_from_db()
    counted = sum(crashes(log).values())
    healthy_sent = Message.objects.filter(pk__in=[m.pk for m in healthy], status="sent").count()
    result = audit(sim)
    summary(
        "poison_before_claim",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=HEALTHY - healthy_sent,
        unknown=result.statuses["unknown"],
        kills=counted,
        poison_status=poison.status,
        poison_attempts=poison.attempts,
        max_attempts=MAX_ATTEMPTS,
    )
    assert counted <= MAX_ATTEMPTS, (
        f"a message that kills its worker before the claim was redelivered {counted} times "
        f"(and counting; status {poison.status!r}): nothing bounds it"
    )
    assert poison.status == "failed", poison.status
    assert poison.error_message, "failed with a reason"
    assert result.requests[str(poison.pk)] == 0
    assert healthy_sent == HEALTHY
    assert result.problems() == []
