"""The on_commit gap: a process commits messages and enrollments and is SIGKILLed before its
`transaction.on_commit` enqueues run. Nothing reached the broker, yet everything is delivered:
the sweeper re-queues `queued` messages older than the lease and the scheduler claims the due
enrollments."""

from __future__ import annotations

import signal
import time

import pytest

from journeys.models import Enrollment, JourneyMessage
from messaging.models import Message

from .conftest import (
    FAULTS_N,
    IN_FLIGHT,
    audit,
    budget,
    db_state,
    make_send_journey,
    purge_broker,
    queue_length,
    scaled_timeout,
    summary,
    touchline_env,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(scaled_timeout(150, 0.1)),
]

LEASE = 10

# Runs in its own process: one transaction creates direct messages (message_create) and
# journey enrollments (event_ingest); the first on_commit callback, registered before any
# of theirs, SIGKILLs the process — after the commit, before any enqueue.
PRODUCER = """
import os, signal, sys
import django
django.setup()
from django.db import transaction
from journeys.services import event_ingest
from messaging.services import contact_upsert, message_create

n = int(os.environ["FAULTS_GAP_N"])
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    for i in range(n):
        contact, _ = contact_upsert(
            external_id=f"gap-{i}", data={"phone": f"+1415{2000000 + i:07d}", "first_name": "G"}
        )
        if i % 2:
            event_ingest(
                name="faults.order", contact=contact, properties={"order": i},
                idempotency_key=f"gap-event-{i}",
            )
        else:
            message_create(
                contact=contact, channel="sms", body=f"Direct {i}", idempotency_key=f"gap-{i}"
            )
print("the on_commit kill did not happen", flush=True)
sys.exit(3)
"""


def test_killed_between_commit_and_enqueue_still_delivers(settings, cluster, simulators):
    n = FAULTS_N
    sim = simulators(callbacks=False)
    journey = make_send_journey()
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(sim, MESSAGE_QUEUED_LEASE_SECONDS=LEASE, FAULTS_GAP_N=n)

    producer = cluster.script("producer", PRODUCER, env)
    assert producer.popen.wait(timeout=budget(60, 0.2)) == -signal.SIGKILL, producer.log_text()
    cluster.kills += 1
    committed_at = time.monotonic()
    direct = Message.objects.filter(source="api", idempotency_key__startswith="gap-")
    enrollments = Enrollment.objects.filter(journey=journey)
    # The commit happened; no enqueue did.
    assert direct.count() == (n + 1) // 2
    assert enrollments.count() == n // 2
    assert set(direct.values_list("status", flat=True)) == {"queued"}
    assert queue_length(settings.CELERY_BROKER_URL) == 0, "nothing reached the broker"

    cluster.beat(env)
    workers = [
        cluster.worker(env, pool="prefork", concurrency=3),
        cluster.worker(env, pool="threads", concurrency=4),
    ]
    cluster.wait_ready(*workers)

    def done() -> bool:
        return (
            not enrollments.filter(state__in=Enrollment.LIVE_STATES).exists()
            and JourneyMessage.objects.filter(journey=journey).count() == n // 2
            and not Message.objects.filter(status__in=IN_FLIGHT).exists()
        )

    wait_until(done, timeout=budget(60, 0.2), what="everything to be delivered", state=db_state)
    elapsed = time.monotonic() - committed_at
    result = audit(sim)
    first_sends = sorted(m.sending_at for m in direct)
    summary(
        "commit_gap",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=n - result.sent,
        unknown=result.statuses["unknown"],
        kills=cluster.kills,
        direct=direct.count(),
        enrollments=enrollments.count(),
        recovered_in_s=round(elapsed, 1),
    )
    assert result.problems() == []
    assert result.duplicates == 0
    assert result.sent == n and result.statuses["sent"] == n, result.statuses
    assert set(enrollments.values_list("state", flat=True)) == {"completed"}
    # The direct messages went out only once their lease had run out: the sweeper sent them.
    created = min(m.created_at for m in direct)
    assert (first_sends[0] - created).total_seconds() >= LEASE
