"""No double send across crashes: a recipient's message is created and the recipient marked
in one transaction, keyed `broadcast:<id>:<contact>:<channel>`; a worker killed mid-batch
rolls both back and the lease lets the batch be claimed again; a message an earlier attempt
did commit is found again, never made twice; a kill after the commit, before the delivery
was queued, is recovered by the messages sweeper. Exactly one message per contact."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns import services
from campaigns.models import BroadcastRecipient
from messaging.models import Message
from messaging.services import message_create, messages_sweep

from .broadcast_fixtures import (
    NOW,
    draft,
    marketer,
    messages_per_contact,
    people,
    states,
    static_segment,
    templates,
)


@pytest.fixture
def staff(db):
    return marketer()


LEASE = dt.timedelta(seconds=settings.BROADCAST_LEASE_SECONDS)


@pytest.mark.django_db
def test_a_message_committed_before_the_crash_is_found_not_sent_again(
    staff, settings, django_capture_on_commit_callbacks
):
    """The earlier attempt created the message and died before the recipient was marked
    (simulated: the message exists with the broadcast's key, the recipient is still pending).
    With the frequency cap at 1, deciding afresh would hold it (its own message counts): the
    existing message is taken as the send instead."""
    settings.FREQUENCY_CAP_MESSAGES = 1
    templates(channels=["sms"])
    a, b = people(2)
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment([a, b])], channel_order=["sms"]), actor=staff, now=NOW
    )
    from campaigns.services.sending import recipients_take

    claimed = services.broadcasts_dispatch(now=NOW)[0].recipient_ids
    recipients_take(claimed)  # a task takes them; the worker "dies" after one message
    first, _ = message_create(
        contact=a,
        channel="sms",
        body="Hi",
        idempotency_key=services.idempotency_key(broadcast.pk, a.pk, "sms"),
        source="broadcast",
        category="marketing",
    )
    assert services.run_due(now=NOW + LEASE - dt.timedelta(seconds=1)) == 0  # leased
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_due(now=NOW + LEASE) == 2
    assert messages_per_contact(broadcast) == {"p-0": 1, "p-1": 1}
    row = BroadcastRecipient.objects.get(contact=a)
    assert row.state == "sent" and row.message_id == first.pk and row.attempts == 2


@pytest.mark.django_db
def test_the_send_step_run_twice_sends_once(staff):
    templates()
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(people(4))]), actor=staff, now=NOW
    )
    ids = services.broadcasts_dispatch(now=NOW)[0].recipient_ids
    # A redelivered task and the re-claim after its lease both run the same send step.
    services.recipients_send(recipient_ids=ids, now=NOW)
    services.recipients_send(recipient_ids=ids, now=NOW)
    services.run_due(now=NOW + LEASE)
    assert messages_per_contact(broadcast) == {f"p-{i}": 1 for i in range(4)}


# --- A real process, killed ---------------------------------------------------------------

WORKER = """
import os, signal
import django
django.setup()
from campaigns import services
from campaigns.services import sending
from messaging.services import messages

kill_after = int(os.environ["KILL_AFTER_MESSAGES"])
created = []
real_create = sending.message_create

def create_then_maybe_die(**kwargs):
    result = real_create(**kwargs)
    created.append(result)
    if kill_after and len(created) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # messages inserted, recipients not yet marked
    return result

sending.message_create = create_then_maybe_die
if os.environ.get("KILL_BEFORE_ENQUEUE"):
    # after the commit, before the first delivery reaches the broker
    messages.enqueue_delivery = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
for claim in services.broadcasts_dispatch():
    services.recipients_send(recipient_ids=claim.recipient_ids)
print("not killed", flush=True)
"""


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += ":" + db["PASSWORD"]
    return (
        f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


def run_worker(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WORKER],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "LOG_LEVEL": "WARNING",
            **env,
        },
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=120,
    )


# Another process must see this test's rows: PostgreSQL (the embedded SQLite test database
# lives in this process's memory).
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="a second process on the test database needs PostgreSQL (CI has it)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_worker_killed_between_message_creation_and_recipient_update(staff, simulator):
    templates()
    n = 6
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(people(n))], category="transactional"), actor=staff
    )

    worker = run_worker(KILL_AFTER_MESSAGES="3")

    assert worker.returncode == -signal.SIGKILL, worker.stdout + worker.stderr
    # Killed inside the batch's transaction: its messages went with it; the rows are leased.
    assert Message.objects.count() == 0
    assert set(states(broadcast).values()) == {"pending"}
    assert services.run_due(now=timezone.now()) == 0
    claimed = services.run_due(now=timezone.now() + LEASE)
    assert claimed == n
    assert set(states(broadcast).values()) == {"sent"}
    assert messages_per_contact(broadcast) == {f"p-{i}": 1 for i in range(n)}
    assert len(simulator.messages(direction="outbound")) == n


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_worker_killed_after_commit_before_delivery_was_queued(staff, simulator, settings):
    templates()
    n = 5
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(people(n))], category="transactional"), actor=staff
    )

    worker = run_worker(KILL_AFTER_MESSAGES="0", KILL_BEFORE_ENQUEUE="1")

    assert worker.returncode == -signal.SIGKILL, worker.stdout + worker.stderr
    # Committed: every recipient sent with its message, none of which reached the broker.
    assert set(states(broadcast).values()) == {"sent"}
    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}
    assert services.run_due(now=timezone.now() + LEASE) == 0  # nothing is sent again
    # The sweeper re-queues the messages whose task was lost (eager here: delivered inline).
    later = timezone.now() + dt.timedelta(seconds=settings.MESSAGE_QUEUED_LEASE_SECONDS + 1)
    messages_sweep(now=later)
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert messages_per_contact(broadcast) == {f"p-{i}": 1 for i in range(n)}
    received = simulator.messages(direction="outbound")
    assert sorted(m["to"] for m in received) == sorted(
        Message.objects.values_list("to_address", flat=True)
    )
    assert len(received) == n


@pytest.mark.django_db
def test_a_recipient_whose_send_keeps_killing_the_worker_is_failed(staff):
    """Claimed over and over with no outcome (the worker died each time): failed with the
    reason after MAX_CLAIMS, so the broadcast can complete."""
    from campaigns.services.sending import MAX_CLAIMS

    templates()
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(people(1))]), actor=staff, now=NOW
    )
    from campaigns.services.sending import recipients_take

    at = NOW
    for _ in range(MAX_CLAIMS + 1):
        claims = services.broadcasts_dispatch(now=at)
        recipients_take(claims[0].recipient_ids)  # a task takes it; the worker dies
        at += LEASE
    services.run_due(now=at)
    row = BroadcastRecipient.objects.get(broadcast=broadcast)
    assert row.state == "failed" and "stopped the worker" in row.reason
    assert not Message.objects.exists()
    broadcast.refresh_from_db()
    assert broadcast.status == "completed"


@pytest.mark.django_db
def test_a_queue_backlog_never_fails_a_recipient_that_was_not_tried(staff):
    """Under a backlog the lease runs out while the send task waits in the queue, and the
    row is claimed again and again: only a task that takes the row counts an attempt, so
    when one finally runs, the recipient is sent, once."""
    from campaigns.services.sending import MAX_CLAIMS

    templates()
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(people(1))]), actor=staff, now=NOW
    )
    at, queued = NOW, []
    for _ in range(MAX_CLAIMS + 3):
        queued += services.broadcasts_dispatch(now=at)  # claimed and queued, not yet run
        at += LEASE
    for claim in queued:  # the queue drains: every task runs, in order
        services.recipients_send(recipient_ids=claim.recipient_ids, now=at)
    row = BroadcastRecipient.objects.get(broadcast=broadcast)
    assert (row.state, row.reason) == ("sent", "")
    assert Message.objects.count() == 1
