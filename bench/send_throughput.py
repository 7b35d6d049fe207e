"""1. Send throughput: messages/s from `queued` to `sent` through the real `deliver_message`
task, on a Celery worker as production runs it (threads pool, CELERY_WORKER_CONCURRENCY),
with the provider simulator answering at 0 ms and at 100 ms.

Baseline: bare Celery no-op tasks/s (bench.tasks.noop: same task options and argument) on the
same broker, pool and concurrency.

Method (the same for the baseline and the product): a warm worker (after a small warm-up
batch) is told to start consuming a fresh queue holding N tasks (`add_consumer`); the clock
starts when that queue first shrinks and stops when it and kombu's `unacked` hash are both
empty (every task finished and acked). Each figure is measured twice: with the worker exactly
as configured (config/celery.py bounds the worker's event-loop sleep, celery#6941).

Goals: 0 ms: >= 0.30x the no-op rate. 100 ms: >= 0.8 x (concurrency / 0.1 s).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

from bench import common as c

CONCURRENCY = int(os.environ.get("CELERY_WORKER_CONCURRENCY", "8"))
N_NOOP = c.scaled(20_000, 1000)  # no-op tasks per run
N_FAST = c.scaled(10_000, 400)  # messages per run at 0 ms
N_SLOW = c.scaled(6_000, 300)  # messages per run at 100 ms
VARIANTS = {"as configured": "bench.tasks"}
_queues = itertools.count(1)


def make_contacts(n: int) -> list[int]:
    from messaging.models import Contact

    Contact.objects.bulk_create(
        [
            Contact(external_id=f"send-{i}", phone=f"+14152{i:06d}", first_name="Ada")
            for i in range(n)
        ],
        batch_size=5000,
    )
    return list(Contact.objects.order_by("id").values_list("id", flat=True)[:n])


def make_messages(contact_ids: list[int]) -> list[str]:
    from django.utils import timezone

    from messaging.models import Message

    now = timezone.now()
    messages = [
        Message(
            direction="outbound",
            channel="sms",
            contact_id=cid,
            to_address=f"+14152{i:06d}",
            body=f"Hi Ada, thank you for your order #{i}! We'll keep you posted.",
            status="queued",
            source="bench",
            category="transactional",
            queued_at=now,
            next_attempt_at=now,
        )
        for i, cid in enumerate(contact_ids)
    ]
    Message.objects.bulk_create(messages, batch_size=5000)
    return [str(m.pk) for m in messages]


def enqueue(task_name: str, ids: list[str], queue: str) -> None:
    from config.celery import app

    with app.producer_or_acquire() as producer:
        for mid in ids:
            app.send_task(task_name, (mid,), queue=queue, producer=producer)


def timed_drain(worker, task_name: str, ids: list[str], timeout: float) -> float:
    """Queue `ids` on a fresh queue, let the worker consume it; tasks/s."""
    from config.celery import app

    queue = f"bench-{next(_queues)}"
    enqueue(task_name, ids, queue)
    r = c.redis_client()
    n = len(ids)
    app.control.add_consumer(queue, reply=False)  # returns at once; we watch the queue
    deadline = time.monotonic() + timeout
    while r.llen(queue) >= n:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited ({worker.returncode}); see {c.LOG_DIR}")
        if time.monotonic() > deadline:
            raise TimeoutError("the worker never took a task")
        time.sleep(0.001)
    started = time.perf_counter()
    while r.llen(queue) or r.hlen("unacked"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue} not drained: {r.llen(queue)} left")
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    app.control.cancel_consumer(queue, reply=True, limit=1, timeout=5)
    return n / seconds


def wait_ready(worker) -> None:
    from config.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5, limit=1):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {c.LOG_DIR}")


def measure(include: str, sim_url: str, contacts: list[int], n_task: int, task: str) -> list:
    from messaging.models import Message

    worker = c.start_worker(
        "send-worker", concurrency=CONCURRENCY, include=include, simulator_url=sim_url
    )
    try:
        wait_ready(worker)
        rates, outcomes = [], {}
        if task == "bench.noop":
            timed_drain(worker, task, [str(uuid.uuid4()) for _ in range(100)], 60)  # warm-up
            for _ in range(c.RUNS):
                ids = [str(uuid.uuid4()) for _ in range(n_task)]
                rates.append(timed_drain(worker, task, ids, 120 + n_task / 5))
            return [rates, outcomes]
        timed_drain(worker, task, make_messages(contacts[: 2 * CONCURRENCY]), 60)  # warm-up
        for _ in range(c.RUNS):
            ids = make_messages(contacts[:n_task])
            rates.append(timed_drain(worker, task, ids, 120 + n_task / 2))
            for status in Message.objects.filter(pk__in=ids).values_list("status", flat=True):
                outcomes[status] = outcomes.get(status, 0) + 1
        return [rates, outcomes]
    finally:
        c.stop(worker)


def main() -> None:
    c.django_setup()
    c.header(
        "1. Send throughput",
        worker=f"1 x celery worker --pool threads -c {CONCURRENCY} (prefetch multiplier 1, "
        "acks_late, as config/settings.py)",
        messages_per_run=f"{N_FAST} at 0 ms / {N_SLOW} at 100 ms; no-op tasks per run: {N_NOOP}",
    )
    with c.bench_services():
        contacts = make_contacts(max(N_FAST, N_SLOW))
        fast_sim, fast_url = c.start_simulator(latency_ms=0, name="simulator-0ms")
        slow_sim, slow_url = c.start_simulator(latency_ms=100, name="simulator-100ms")
        for variant, include in VARIANTS.items():
            n_fast, n_slow = N_FAST, N_SLOW
            noop, _ = measure(include, "", contacts, N_NOOP, "bench.noop")
            fast, fast_out = measure(
                include, fast_url, contacts, n_fast, "messaging.deliver_message"
            )
            c.report(
                c.Figure(
                    "send",
                    f"deliver_message, simulator 0 ms, {variant}",
                    "msg/s",
                    fast,
                    f"bare Celery no-op task, {variant}",
                    noop,
                    goal=">= 0.30",
                    notes={"outcomes": fast_out, "messages per run": n_fast},
                )
            )
            slow, slow_out = measure(
                include, slow_url, contacts, n_slow, "messaging.deliver_message"
            )
            ideal = CONCURRENCY / 0.1
            c.report(
                c.Figure(
                    "send",
                    f"deliver_message, simulator 100 ms, {variant}",
                    "msg/s",
                    slow,
                    f"concurrency / latency = {CONCURRENCY} / 0.1 s",
                    [ideal] * c.RUNS,
                    goal=">= 0.8",
                    notes={"outcomes": slow_out, "messages per run": n_slow},
                )
            )
        c.stop(fast_sim)
        c.stop(slow_sim)


if __name__ == "__main__":
    main()
