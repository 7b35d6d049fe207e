"""Restart the broker mid-load: a private redis-server (it keeps nothing) is SIGKILLed while
events pour in through the HTTP API and workers deliver, then started again, empty. Every
task it held is gone; nothing is lost: `queued` messages whose task vanished are re-queued by
the sweeper, due enrollments are claimed again by the scheduler after their lease, and a
client retrying with its Idempotency-Key gets exactly one event, enrollment and message."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict

import pytest
import requests

from journeys.models import Enrollment, Event
from messaging.models import Message

from .conftest import (
    FAULTS_N,
    IN_FLIGHT,
    Background,
    audit,
    budget,
    db_state,
    event_payload,
    free_port,
    make_send_journey,
    scaled_timeout,
    summary,
    touchline_env,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(scaled_timeout(240, 0.3)),
]

DOWN_SECONDS = 3


def _sum_in_logs(cluster, pattern: str) -> int:
    return sum(int(n) for proc in cluster.procs for n in re.findall(pattern, proc.log_text()))


def test_redis_restart_mid_load_loses_nothing(
    settings, api_key, cluster, private_redis, simulators
):
    n = FAULTS_N
    restarts = max(1, n // 500)
    sim = simulators(callbacks=False, latency_ms=20)
    journey = make_send_journey()
    env = touchline_env(
        sim,
        broker=private_redis.url,
        # Rate limits and API throttling stay on the shared Redis: this test is about the broker.
        REDIS_URL=settings.REDIS_URL,
    )
    web_port = free_port()
    cluster.web(env, web_port)
    cluster.beat(env)
    workers = [
        cluster.worker(env, pool="prefork", concurrency=3),
        cluster.worker(env, pool="threads", concurrency=4),
    ]
    cluster.wait_ready(*workers)

    answers: dict[str, list[int]] = defaultdict(list)
    posted = 0
    lock = threading.Lock()

    def client(indexes: range) -> None:
        # A well-behaved backend: on a 5xx or a dropped connection it retries the same event
        # with the same Idempotency-Key until it gets an answer.
        nonlocal posted
        session = requests.Session()
        url = f"http://127.0.0.1:{web_port}/api/v1/events/"
        for i in indexes:
            payload = event_payload(i, prefix="b")
            key = payload.pop("idempotency_key")
            headers = {"Authorization": f"Api-Key {api_key}", "Idempotency-Key": key}
            for _ in range(60):
                try:
                    response = session.post(url, json=payload, headers=headers, timeout=30)
                    status = response.status_code
                except requests.RequestException:
                    status = 0
                with lock:
                    answers[key].append(status)
                if 200 <= status < 300:
                    break
                assert status == 0 or status >= 500, (status, response.text[:500])
                time.sleep(0.5)
            with lock:
                posted += 1

    clients = [
        Background(lambda part=part: client(range(part, n, 4)), f"client-{part}")
        for part in range(4)
    ]
    for thread in clients:
        thread.start()

    # Kill the broker at evenly spaced points of the load; it comes back empty.
    for r in range(restarts):
        threshold = n * (r + 1) / (restarts + 1)
        wait_until(lambda t=threshold: posted >= t, timeout=budget(60, 0.2), what="the load")
        private_redis.kill9()
        time.sleep(DOWN_SECONDS)
        private_redis.start()
    for thread in clients:
        thread.join_checked(timeout=budget(120, 0.5))

    def done() -> bool:
        return (
            Enrollment.objects.filter(journey=journey).count() == n
            and not Enrollment.objects.filter(state__in=Enrollment.LIVE_STATES).exists()
            and Message.objects.count() == n
            and not Message.objects.filter(status__in=IN_FLIGHT).exists()
        )

    wait_until(done, timeout=budget(90, 0.2), what="every event's message", state=db_state)
    time.sleep(1)

    result = audit(sim)
    # A 5xx followed by a replay (200) means the first attempt had stored the event.
    stored_but_5xx = sorted(
        key for key, codes in answers.items() if any(c >= 500 for c in codes) and codes[-1] == 200
    )
    failed_attempts = sum(1 for codes in answers.values() for c in codes if c == 0 or c >= 500)
    summary(
        "broker_restart",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=n - result.sent,
        unknown=result.statuses["unknown"],
        kills=cluster.kills,
        redis_restarts=restarts,
        events=Event.objects.count(),
        http_errors_retried=failed_attempts,
        stored_but_answered_5xx=len(stored_but_5xx),
        requeued_by_sweeper=_sum_in_logs(cluster, r"'requeued': (\d+)"),
        claimed_by_scheduler=_sum_in_logs(
            cluster, r"schedule_due\[[^]]+\] succeeded in [\d.]+s: (\d+)"
        ),
    )
    assert len(answers) == n and all(200 <= codes[-1] < 300 for codes in answers.values())
    assert Event.objects.count() == n, "one event per Idempotency-Key"
    assert Enrollment.objects.filter(journey=journey, state="completed").count() == n
    assert result.problems() == []
    assert result.duplicates == 0
    assert result.statuses["sent"] == n, result.statuses
    # The API must not answer 5xx for an event it stored: a client without an
    # Idempotency-Key would resend it, and enroll the contact twice.
    assert stored_but_5xx == [], (
        f"{len(stored_but_5xx)} events were stored but answered 5xx (the broker was down when "
        f"the commit's on_commit enqueue ran), e.g. {stored_but_5xx[:3]}"
    )
