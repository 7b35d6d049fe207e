"""A provider storm: 30% of sends answered 429 (with Retry-After) or 5xx for a while, then
healthy. Every message ends `sent` or `failed` with a reason, none is sent twice, and the
backoff is honoured: no attempt after a 429 comes sooner than its Retry-After."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from datetime import datetime

import pytest

from messaging.models import Contact, Message, Touchpoint
from messaging.services import message_create

from .conftest import (
    FAULTS_N,
    IN_FLIGHT,
    Background,
    audit,
    budget,
    db_state,
    phone,
    purge_broker,
    scaled_timeout,
    summary,
    touchline_env,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(scaled_timeout(200, 0.1)),
]

RETRY_AFTER = 2  # seconds, in the simulator's 429 answers
BASE = 0.5  # MESSAGE_RETRY_BASE_SECONDS for the workers
CAP = 4.0  # MESSAGE_RETRY_MAX_SECONDS
MAX_ATTEMPTS = 6
# Clock granularity: the simulator stamps requests to the millisecond.
SLACK = 0.01


def _at(record: dict) -> float:
    return datetime.fromisoformat(record["received_at"]).timestamp()


def backoff_floor(attempt: int) -> float:
    """The shortest delay services.retry_delay may choose after failed attempt `attempt`."""
    return min(CAP, BASE * 2 ** max(attempt - 1, 0)) / 2


def create_messages(start: int, stop: int, prefix: str) -> list[str]:
    ids = []
    for i in range(start, stop):
        contact = Contact.objects.create(
            external_id=f"{prefix}-{i}", phone=phone(i), first_name=f"S{i}"
        )
        message, _ = message_create(
            contact=contact,
            channel="sms",
            body=f"Storm {i}",
            idempotency_key=f"{prefix}-{i}",
        )
        ids.append(str(message.pk))
    return ids


def test_provider_storm_retries_with_backoff_and_never_twice(settings, cluster, simulators):
    n = FAULTS_N
    storm_seconds = min(60.0, max(20.0, n * 0.03))
    sim = simulators(callbacks=False, latency_ms=20)
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(
        sim,
        MESSAGE_MAX_ATTEMPTS=MAX_ATTEMPTS,
        MESSAGE_RETRY_BASE_SECONDS=BASE,
        MESSAGE_RETRY_MAX_SECONDS=CAP,
        # Longer than any backoff here: a message waiting for its retry is not "lost".
        MESSAGE_QUEUED_LEASE_SECONDS=30,
    )
    cluster.beat(env)
    workers = [
        cluster.worker(env, pool="prefork", concurrency=3),
        cluster.worker(env, pool="threads", concurrency=4),
    ]
    cluster.wait_ready(*workers)

    # The storm: 30% of requests fail, alternating 429 (Retry-After: 2) and 503/500.
    sim.configure(error_rate=0.3, error_status=429, retry_after=RETRY_AFTER)
    storm_over = threading.Event()

    def storm() -> None:
        statuses = [429, 503, 429, 500]
        i = 0
        while not storm_over.wait(1.0):
            i += 1
            sim.configure(error_status=statuses[i % len(statuses)])

    storm_thread = Background(storm, "storm")
    storm_thread.start()
    started = time.monotonic()
    ids: list[str] = []

    def load() -> None:
        # Messages keep arriving through the first two thirds of the storm.
        chunks = 10
        for c in range(chunks):
            ids.extend(create_messages(c * n // chunks, (c + 1) * n // chunks, "storm"))
            time.sleep(storm_seconds * 0.66 / chunks)

    loader = Background(load, "storm-loader")
    loader.start()
    loader.join_checked(timeout=budget(120, 0.2))
    time.sleep(max(0.0, storm_seconds - (time.monotonic() - started)))
    storm_over.set()
    storm_thread.join_checked(timeout=10)
    sim.configure(error_rate=0.0)
    healthy_at = time.time()

    def done() -> bool:
        return not Message.objects.filter(pk__in=ids, status__in=IN_FLIGHT).exists()

    wait_until(done, timeout=budget(90, 0.1), what="every message to settle", state=db_state)

    result = audit(sim, Message.objects.filter(pk__in=ids))
    assert len(ids) == n == len(result.messages)
    rejected = [r for r in sim.rejected() if r.get("touchline_id")]
    by_id: dict[str, list[dict]] = defaultdict(list)
    for record in rejected:
        by_id[record["touchline_id"]].append({**record, "ok": False})
    for record in sim.messages(direction="outbound"):
        by_id[record["touchline_id"]].append({**record, "ok": True, "http_status": 201})

    # Backoff as seen by the provider: the gap between one request for a message and the next.
    too_soon = []
    gaps_429 = []
    for tid, requests in by_id.items():
        requests.sort(key=_at)
        for attempt, (prev, nxt) in enumerate(itertools.pairwise(requests), start=1):
            gap = _at(nxt) - _at(prev)
            if prev["http_status"] == 429:
                gaps_429.append(gap)
                floor = RETRY_AFTER
            else:
                floor = backoff_floor(attempt)
            if gap + SLACK < floor:
                too_soon.append((tid, attempt, prev["http_status"], round(gap, 3), floor))
    # Backoff as Touchline recorded it (the retrying touchpoints).
    retrying = Touchpoint.objects.filter(message_id__in=ids, kind="retrying")
    short_retries = [
        (str(t.message_id), t.data)
        for t in retrying
        if t.data.get("code") == "20429" and t.data["retry_in_seconds"] < RETRY_AFTER
    ]
    failed = Message.objects.filter(pk__in=ids, status="failed")
    count_429 = sum(1 for r in rejected if r["http_status"] == 429)
    summary(
        "provider_storm",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=result.in_flight,
        unknown=result.statuses["unknown"],
        kills=0,
        failed=result.statuses["failed"],
        rejected_429=count_429,
        rejected_5xx=len(rejected) - count_429,
        retries=retrying.count(),
        too_soon=len(too_soon),
        min_gap_after_429=round(min(gaps_429), 3) if gaps_429 else None,
        storm_s=round(storm_seconds),
        settle_s=round(time.time() - healthy_at),
    )
    assert result.problems() == []
    assert result.duplicates == 0
    assert result.statuses["unknown"] == 0
    assert result.sent + result.statuses["failed"] == n, result.statuses
    for message in failed:
        assert message.error_message.startswith(f"gave up after {MAX_ATTEMPTS} attempts"), (
            message.error_message
        )
        assert message.attempts == MAX_ATTEMPTS
    assert count_429 > 0 and len(rejected) > count_429, "the storm injected both kinds"
    assert short_retries == [], short_retries[:5]
    assert too_soon == [], too_soon[:10]
    # Every message was attempted at most MAX_ATTEMPTS times.
    assert max(len(r) for r in by_id.values()) <= MAX_ATTEMPTS


def test_duplicate_task_during_retry_after_does_not_send_early(settings, cluster, simulators):
    """Tasks are delivered at least once: a second `deliver_message` for the same message (a
    broker redelivery after a worker died post-commit, or a sweeper re-queue racing the
    original) may arrive while the message waits out a 429's Retry-After. It must not send
    before Retry-After has passed."""
    from messaging.tasks import deliver_message

    retry_after = 6
    sim = simulators(callbacks=False)
    sim.configure(error_rate=1.0, error_status=429, retry_after=retry_after)
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(sim, MESSAGE_QUEUED_LEASE_SECONDS=60)
    worker = cluster.worker(env, pool="prefork", concurrency=2)
    cluster.wait_ready(worker)
    count = 5
    ids = create_messages(0, count, "dup")
    wait_until(
        lambda: Touchpoint.objects.filter(message_id__in=ids, kind="retrying").count() == count,
        timeout=30,
        what="the first attempts to be answered 429",
    )
    sim.configure(error_rate=0.0)  # the provider is fine again; Retry-After still stands
    for pk in ids:
        deliver_message.delay(pk)  # the duplicate task
    wait_until(
        lambda: Message.objects.filter(pk__in=ids, status="sent").count() == count,
        timeout=60,
        what="the retries to be sent",
    )
    too_soon = []
    for pk in ids:
        (rejection,) = [r for r in sim.rejected() if r["touchline_id"] == pk]
        (accepted,) = sim.messages(touchline_id=pk)
        gap = _at(accepted) - _at(rejection)
        if gap + SLACK < retry_after:
            too_soon.append((pk, round(gap, 3)))
    result = audit(sim, Message.objects.filter(pk__in=ids))
    summary(
        "duplicate_task_in_backoff",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=result.in_flight,
        unknown=result.statuses["unknown"],
        kills=0,
        retry_after=retry_after,
        sent_before_retry_after=len(too_soon),
    )
    assert result.duplicates == 0
    assert too_soon == [], f"sent sooner than Retry-After={retry_after}s after the 429: {too_soon}"
