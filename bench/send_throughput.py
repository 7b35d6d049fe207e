"""1. Send throughput: messages/s from `queued` to `sent` through the real `deliver_message`
task, on Celery workers as production runs them (CELERY_WORKER_PROCESSES processes, 2 by
default: one per core, each `--pool threads -c CELERY_WORKER_CONCURRENCY`), with the provider
simulator answering at 0 ms and at 100 ms.

Baseline: bare Celery no-op tasks/s (bench.tasks.noop: same task options and argument) on the
same broker and the same worker layout (processes, pool, concurrency).

Method (the same for the baseline and the product): warm workers (after a small warm-up
batch) are told to start consuming a fresh queue holding N tasks (`add_consumer`); the clock
starts when that queue first shrinks and stops when it and kombu's `unacked` hash are both
empty (every task finished and acked). The workers run exactly as configured
(config/celery.py bounds the worker's event-loop sleep, celery#6941). Notes give the CPU time
the workers and the simulator used per task over the same interval (from /proc): unlike the
rates, it hardly moves when other processes load the machine.

Goals: 0 ms: >= 0.30x the no-op rate. 100 ms: >= 0.8 x (processes x concurrency / 0.1 s).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

from bench import common as c

# The production layout (Procfile, config/settings.py): one worker process per core, 8 threads
# each. The no-op baseline runs on the same layout.
CONCURRENCY = int(os.environ.get("CELERY_WORKER_CONCURRENCY", "8"))
PROCESSES = int(os.environ.get("CELERY_WORKER_PROCESSES", "2"))
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


def timed_drain(
    workers: list,
    task_name: str,
    ids: list[str],
    timeout: float,
    watch: dict[str, list] | None = None,
) -> tuple[float, dict[str, float]]:
    """Queue `ids` on a fresh queue, let the workers consume it; (tasks/s, CPU ms per task of
    each named group of processes in `watch` over the same interval)."""
    from config.celery import app

    queue = f"bench-{next(_queues)}"
    enqueue(task_name, ids, queue)
    r = c.redis_client()
    n = len(ids)
    app.control.add_consumer(queue, reply=False)  # returns at once; we watch the queue
    deadline = time.monotonic() + timeout
    while r.llen(queue) >= n:
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited ({worker.returncode}); see {c.LOG_DIR}")
        if time.monotonic() > deadline:
            raise TimeoutError("the workers never took a task")
        time.sleep(0.001)
    watch = watch or {}
    cpu_before = {name: sum(c.cpu_seconds(p.pid) for p in procs) for name, procs in watch.items()}
    started = time.perf_counter()
    while r.llen(queue) or r.hlen("unacked"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue} not drained: {r.llen(queue)} left")
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    cpu = {
        name: (sum(c.cpu_seconds(p.pid) for p in procs) - cpu_before[name]) / n * 1000
        for name, procs in watch.items()
    }
    app.control.cancel_consumer(queue, reply=True, limit=len(workers), timeout=5)
    return n / seconds, cpu


def wait_ready(workers: list) -> None:
    from config.celery import app

    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5, limit=len(workers))) < len(workers):
        if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
            raise RuntimeError(f"workers did not start; see {c.LOG_DIR}")


def measure(
    include: str, sim, sim_url: str, contacts: list[int], n_task: int, task: str
) -> tuple[list[float], dict[str, int], dict[str, float]]:
    """(tasks/s of each run, message outcomes, median CPU ms per task: workers, simulator)."""
    from messaging.models import Message

    workers = [
        c.start_worker(
            f"send-worker-{i}", concurrency=CONCURRENCY, include=include, simulator_url=sim_url
        )
        for i in range(PROCESSES)
    ]
    watch = {"workers": workers, **({"simulator": [sim]} if sim else {})}
    try:
        wait_ready(workers)
        rates, outcomes, cpu = [], {}, {name: [] for name in watch}
        if task == "bench.noop":
            timed_drain(workers, task, [str(uuid.uuid4()) for _ in range(100)], 60)  # warm-up
        else:
            warm_up = make_messages(contacts[: 2 * CONCURRENCY * PROCESSES])
            timed_drain(workers, task, warm_up, 60)
        for _ in range(c.RUNS):
            if task == "bench.noop":
                ids = [str(uuid.uuid4()) for _ in range(n_task)]
                rate, used = timed_drain(workers, task, ids, 120 + n_task / 5, watch)
            else:
                ids = make_messages(contacts[:n_task])
                rate, used = timed_drain(workers, task, ids, 120 + n_task / 2, watch)
                for status in Message.objects.filter(pk__in=ids).values_list("status", flat=True):
                    outcomes[status] = outcomes.get(status, 0) + 1
            rates.append(rate)
            for name, ms in used.items():
                cpu[name].append(ms)
        return rates, outcomes, {name: round(c.median(v), 2) for name, v in cpu.items()}
    finally:
        for worker in workers:
            c.stop(worker)


def main() -> None:
    c.django_setup()
    c.header(
        "1. Send throughput",
        worker=f"{PROCESSES} x celery worker --pool threads -c {CONCURRENCY} (prefetch "
        "multiplier 1, acks_late, as config/settings.py and the Procfile)",
        messages_per_run=f"{N_FAST} at 0 ms / {N_SLOW} at 100 ms; no-op tasks per run: {N_NOOP}",
    )
    with c.bench_services():
        contacts = make_contacts(max(N_FAST, N_SLOW))
        fast_sim, fast_url = c.start_simulator(latency_ms=0, name="simulator-0ms")
        slow_sim, slow_url = c.start_simulator(latency_ms=100, name="simulator-100ms")
        for variant, include in VARIANTS.items():
            n_fast, n_slow = N_FAST, N_SLOW
            noop, _, noop_cpu = measure(include, None, "", contacts, N_NOOP, "bench.noop")
            fast, fast_out, fast_cpu = measure(
                include, fast_sim, fast_url, contacts, n_fast, "messaging.deliver_message"
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
                    notes={
                        "outcomes": fast_out,
                        "messages per run": n_fast,
                        "CPU ms per message (workers, simulator)": fast_cpu,
                        "CPU ms per no-op task (workers)": noop_cpu,
                    },
                )
            )
            slow, slow_out, slow_cpu = measure(
                include, slow_sim, slow_url, contacts, n_slow, "messaging.deliver_message"
            )
            slots = PROCESSES * CONCURRENCY
            ideal = slots / 0.1
            c.report(
                c.Figure(
                    "send",
                    f"deliver_message, simulator 100 ms, {variant}",
                    "msg/s",
                    slow,
                    f"concurrency / latency = {slots} / 0.1 s",
                    [ideal] * c.RUNS,
                    goal=">= 0.8",
                    notes={
                        "outcomes": slow_out,
                        "messages per run": n_slow,
                        "CPU ms per message (workers, simulator)": slow_cpu,
                    },
                )
            )
        c.stop(fast_sim)
        c.stop(slow_sim)


if __name__ == "__main__":
    main()
