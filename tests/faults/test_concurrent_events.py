"""50 identical event posts at once (same Idempotency-Key, same body, real HTTP through a
threaded live server): one event, one enrollment, one message, one provider request."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from journeys.models import Enrollment, Event
from messaging.models import Contact, Message

from .conftest import (
    FAULTS_N,
    TRIGGER,
    audit,
    make_send_journey,
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
    pytest.mark.timeout(scaled_timeout(120, 0.1)),
]

CONCURRENCY = 50


class _WideServer(ThreadedWSGIServer):
    # Django's servers listen with a backlog of 10: 50 simultaneous connects overflow it and
    # the kernel resets some. A load balancer in front of real servers queues them instead.
    request_queue_size = 128


class _WideLiveServerThread(LiveServerThread):
    server_class = _WideServer


@pytest.fixture
def wide_live_server(transactional_db) -> Iterator[str]:
    """Like pytest-django's live_server (threads, the test database), with a wide backlog."""
    thread = _WideLiveServerThread("127.0.0.1", _StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(timeout=30)
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@dataclass(frozen=True)
class Answer:
    status: int
    replayed: bool
    event_id: int | None
    text: str


def post_at_once(
    url: str, headers: dict[str, str], body: dict, transient: list[int]
) -> list[Answer]:
    """CONCURRENCY clients post the same request at the same instant; each retries a 5xx or a
    dropped connection with the same key (e.g. the database refused a connection), as a
    well-behaved client does. Returns each client's final answer."""
    barrier = threading.Barrier(CONCURRENCY)
    answers: list[Answer] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    # One connection per request: a kept-alive one would pin a server thread (and its
    # database connection) after the answer.
    headers = {**headers, "Connection": "close"}

    def one() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(20):
                try:
                    response = requests.post(url, json=body, headers=headers, timeout=60)
                except requests.ConnectionError:
                    with lock:
                        transient.append(0)
                    time.sleep(random.uniform(0.2, 1.0))
                    continue
                with response:
                    answer = Answer(
                        status=response.status_code,
                        replayed=response.headers.get("Idempotent-Replayed") == "true",
                        event_id=response.json().get("id") if response.status_code < 300 else None,
                        text=response.text[:300],
                    )
                if answer.status < 500:
                    break
                with lock:
                    transient.append(answer.status)
                time.sleep(random.uniform(0.2, 1.0))
            with lock:
                answers.append(answer)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    return answers


def test_identical_concurrent_event_posts_make_one_message(
    wide_live_server, settings, api_key, cluster, simulators
):
    rounds = max(2, FAULTS_N // 100)
    sim = simulators(callbacks=False)
    journey = make_send_journey()
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(sim)
    worker = cluster.worker(env, pool="threads", concurrency=4)
    cluster.wait_ready(worker)

    codes: Counter = Counter()
    transient: list[int] = []
    replayed = 0
    for r in range(rounds):
        # A new contact each round: its creation races too.
        body = {
            "name": TRIGGER,
            "contact": {"external_id": f"race-{r}", "first_name": "R", "phone": phone(900000 + r)},
            "properties": {"order": f"race-{r}"},
        }
        headers = {"Authorization": f"Api-Key {api_key}", "Idempotency-Key": f"race-{r}"}
        answers = post_at_once(f"{wide_live_server}/api/v1/events/", headers, body, transient)
        codes.update(a.status for a in answers)
        assert len(answers) == CONCURRENCY
        assert sorted({a.status for a in answers}) == [200, 202], [
            (a.status, a.text) for a in answers if a.status not in (200, 202)
        ]
        assert [a.status for a in answers].count(202) == 1
        replayed += sum(a.replayed for a in answers)
        assert len({a.event_id for a in answers}) == 1, "every answer names the same event"

    wait_until(
        lambda: Message.objects.filter(status="sent").count() == rounds,
        timeout=60,
        what="the messages to be sent",
    )
    result = audit(sim)
    summary(
        "concurrent_events",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=rounds - result.sent,
        unknown=result.statuses["unknown"],
        kills=0,
        rounds=rounds,
        posts=sum(codes.values()),
        accepted_202=codes[202],
        replayed_200=codes[200],
        retried_after_5xx=len(transient),
        events=Event.objects.count(),
        enrollments=Enrollment.objects.filter(journey=journey).count(),
    )
    assert replayed == rounds * (CONCURRENCY - 1)
    assert Contact.objects.filter(external_id__startswith="race-").count() == rounds
    assert Event.objects.count() == rounds
    assert Enrollment.objects.filter(journey=journey).count() == rounds
    assert Message.objects.count() == rounds
    assert result.problems() == []
    assert sum(result.requests.values()) == rounds, "one provider request per event"
