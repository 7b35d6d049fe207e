"""8. Broadcast sending: a broadcast to N contacts delivered, against the journey send path in
the same run, and the throttle held.

Both paths run on the same workers (CELERY_WORKER_PROCESSES x `celery worker --pool threads
-c CELERY_WORKER_CONCURRENCY`, 2 x 8 by default, as production), the same provider simulator
(0 ms, real twilio SDK), one SMS template, transactional (no quiet hours: the wall clock
must not decide), each contact SMS-reachable. The beat is emulated in this process at its
configured interval, as bench/scheduler.py does: `campaigns.tasks.dispatch_due` for the
broadcast, `journeys.tasks.schedule_due` for the journey. The clock starts at the first tick
and stops when all N messages are `sent` (the provider accepted them).

- broadcast: launched (the freeze is not timed: bench/broadcast_plan.py measures it), then
  dispatch claims, `send_recipients` tasks decide and create the messages through
  evaluate_send + message_create, `deliver_message` sends them;
- baseline, the journey send path: N enrollments due at a one-step journey (send SMS); the
  scheduler claims them, `advance_enrollments` runs the send step (evaluate_send +
  message_create), `deliver_message` sends them.
- throttle: a broadcast with throttle_per_minute (BENCH_THROTTLE_PER_MINUTE, 1200) driven for
  BENCH_THROTTLE_SECONDS (90; 300 at BENCH_SCALE=1); the rate is the least-squares slope of
  the simulator's receive times over the run minus its first 10 s and last 5 s. Baseline:
  the configured rate.

N: BENCH_BROADCAST_SEND_N, else 100k x BENCH_SCALE (at least 2000).
Goals (issue 13): >= 0.8x the journey path; the throttle within 5 %.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from datetime import datetime

from bench import common as c
from bench.ratelimit import sim_get, sim_reset
from bench.send_throughput import CONCURRENCY, PROCESSES, wait_ready

N = int(os.environ.get("BENCH_BROADCAST_SEND_N", str(c.scaled(100_000, 2000))))
THROTTLE = int(os.environ.get("BENCH_THROTTLE_PER_MINUTE", "1200"))
# Minutes at full scale; a minute and a half for the quick run.
THROTTLE_SECONDS = float(os.environ.get("BENCH_THROTTLE_SECONDS", "300" if c.SCALE >= 1 else "90"))
_slugs = iter(range(1, 10_000))


def make_contacts(n: int) -> list[int]:
    from messaging.models import Contact

    Contact.objects.bulk_create(
        [
            Contact(
                external_id=f"bsend-{i}",
                phone=f"+1415{2000000 + i:07d}",
                first_name="Ada",
                timezone="Europe/London",
            )
            for i in range(n)
        ],
        batch_size=5000,
    )
    return list(Contact.objects.order_by("id").values_list("id", flat=True))


def setup():
    from journeys.models import Journey, Step
    from messaging.models import Template

    Template.objects.create(
        slug="bench-sms", name="Bench", channel="sms", body="Hi {{ contact.first_name }}!"
    )
    journey = Journey.objects.create(
        name="Bench send",
        slug="bench-send",
        status=Journey.Status.ACTIVE,
        trigger_event="bench.never",
        entry_policy=Journey.EntryPolicy.EVERY_TIME,
        category=Journey.Category.TRANSACTIONAL,
    )
    step = Step.objects.create(
        journey=journey,
        position=0,
        key="send",
        kind=Step.Kind.SEND,
        config={"channel": "sms", "template": "bench-sms", "fallback_channels": []},
    )
    return journey, step


def reset(sim_url: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE messaging_message, messaging_touchpoint, journeys_stepvisit, "
            "journeys_enrollment, campaigns_broadcastrecipient, audiences_segmentmembership "
            "CASCADE"
        )
    sim_reset(sim_url)


def static_segment(contact_ids: list[int]):
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Segment

    segment = Segment.objects.create(
        name="Bench", slug=f"bench-{next(_slugs)}", kind=Segment.Kind.STATIC, definition={}
    )
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO audiences_segmentmembership (segment_id, contact_id, entered_at) "
            "SELECT %s, unnest(%s::bigint[]), %s",
            [segment.pk, contact_ids, timezone.now()],
        )
    return segment


def launch(contact_ids: list[int], **fields):
    from campaigns.models import Broadcast
    from campaigns.services import broadcast_launch

    broadcast = Broadcast.objects.create(
        name="Bench",
        slug=f"bench-{next(_slugs)}",
        template_slug="bench-sms",
        channel_order=["sms"],
        category="transactional",
        **fields,
    )
    broadcast.segments.set([static_segment(contact_ids)])
    return broadcast_launch(broadcast=broadcast, actor="bench")


def make_enrollments(journey, step, contact_ids: list[int]) -> None:
    from django.db import connection
    from django.utils import timezone

    from journeys.models import Enrollment

    past = timezone.now() - dt.timedelta(seconds=1)
    Enrollment.objects.bulk_create(
        [
            Enrollment(
                journey=journey,
                contact_id=cid,
                entry_policy="every_time",
                state="active",
                current_step=step,
                next_run_at=past,
                context={"event": {"name": "bench"}, "steps": {}},
            )
            for cid in contact_ids
        ],
        batch_size=5000,
    )
    with connection.cursor() as cur:
        cur.execute("ANALYZE journeys_enrollment")


def sent() -> int:
    from messaging.models import Message

    return Message.objects.filter(status="sent").count()


def drive(tick, n: int, workers: list, interval: float) -> float:
    """Call `tick` (what beat runs) every `interval` s until n messages are sent; msg/s."""
    started = time.perf_counter()
    next_tick = started
    next_check = started
    while True:
        now = time.perf_counter()
        if now >= next_tick:
            tick()
            next_tick += interval
        if now >= next_check:
            if sent() >= n:
                return n / (time.perf_counter() - started)
            next_check = now + 0.25
        if any(w.poll() is not None for w in workers):
            raise RuntimeError(f"a worker exited; see {c.LOG_DIR}")
        if now - started > 600 + n / 5:
            raise TimeoutError(f"{sent()} of {n} sent")
        time.sleep(0.01)


def throttle_run(contact_ids: list[int], sim_url: str, workers: list, interval: float):
    from campaigns.services import broadcast_cancel
    from campaigns.tasks import dispatch_due

    broadcast = launch(contact_ids, throttle_per_minute=THROTTLE)
    started = time.perf_counter()
    next_tick = started
    while time.perf_counter() - started < THROTTLE_SECONDS:
        if time.perf_counter() >= next_tick:
            dispatch_due()
            next_tick += interval
        if any(w.poll() is not None for w in workers):
            raise RuntimeError(f"a worker exited; see {c.LOG_DIR}")
        time.sleep(0.01)
    broadcast_cancel(broadcast=broadcast, actor="bench")
    time.sleep(3)  # the last claims' deliveries
    records = sim_get(f"{sim_url}/_sim/messages?direction=outbound")
    times = sorted(datetime.fromisoformat(r["received_at"]).timestamp() for r in records)
    first = times[0]
    lo, hi = first + 10, first + THROTTLE_SECONDS - 5
    window = [t for t in times if lo <= t < hi]
    # The slope of messages received over time (least squares): the claims come in one
    # burst per tick, so counting inside a window would depend on where its edges fall.
    return statistics.linear_regression(window, range(len(window))).slope * 60, len(records)


def main() -> None:
    c.django_setup()
    from django.conf import settings

    from campaigns.tasks import dispatch_due
    from journeys.tasks import schedule_due

    throttle_contacts = int(THROTTLE * THROTTLE_SECONDS / 60 * 1.2) + 100
    c.header(
        "8. Broadcast sending",
        recipients=N,
        workers=f"{PROCESSES} x celery worker --pool threads -c {CONCURRENCY}",
        beat=f"broadcasts every {settings.BROADCAST_DISPATCH_INTERVAL_SECONDS} s, journeys "
        f"every {settings.SCHEDULER_INTERVAL_SECONDS} s (in this process)",
        throttle=f"{THROTTLE}/min for {THROTTLE_SECONDS:.0f} s",
    )
    with c.bench_services():
        contacts = make_contacts(max(N, throttle_contacts))
        journey, step = setup()
        sim, sim_url = c.start_simulator(latency_ms=0, name="broadcast-simulator")
        workers = [
            c.start_worker(f"broadcast-worker-{i}", concurrency=CONCURRENCY, simulator_url=sim_url)
            for i in range(PROCESSES)
        ]
        try:
            wait_ready(workers)
            broadcast_rates, journey_rates = [], []
            # A warm-up of each path (imports, connections, the SDK clients).
            for path in ("warm-up", *range(c.RUNS)):
                n = 100 if path == "warm-up" else N
                order = (
                    ("broadcast", "journey")
                    if path == "warm-up" or path % 2
                    else ("journey", "broadcast")
                )
                for which in order:
                    reset(sim_url)
                    if which == "broadcast":
                        launch(contacts[:n])
                        rate = drive(
                            dispatch_due, n, workers, settings.BROADCAST_DISPATCH_INTERVAL_SECONDS
                        )
                        if path != "warm-up":
                            broadcast_rates.append(rate)
                    else:
                        make_enrollments(journey, step, contacts[:n])
                        rate = drive(schedule_due, n, workers, settings.SCHEDULER_INTERVAL_SECONDS)
                        if path != "warm-up":
                            journey_rates.append(rate)
            c.report(
                c.Figure(
                    "broadcast_send",
                    f"broadcast to {N} contacts, dispatch -> send_recipients -> deliver",
                    "msg/s",
                    broadcast_rates,
                    "the journey send path (schedule_due -> advance_enrollments -> deliver)",
                    journey_rates,
                    goal=">= 0.8",
                    notes={"messages per run": N},
                )
            )
            reset(sim_url)
            measured, received = throttle_run(
                contacts[:throttle_contacts],
                sim_url,
                workers,
                settings.BROADCAST_DISPATCH_INTERVAL_SECONDS,
            )
            c.report(
                c.Figure(
                    "broadcast_send",
                    f"throttled broadcast, {THROTTLE}/min for {THROTTLE_SECONDS:.0f} s",
                    "msg/min",
                    [measured],
                    "throttle_per_minute as configured",
                    [THROTTLE],
                    goal="within 0.05",
                    notes={"messages received": received},
                )
            )
        finally:
            for worker in workers:
                c.stop(worker)
            c.stop(sim)


if __name__ == "__main__":
    main()
