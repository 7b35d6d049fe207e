"""3. Journey scheduler: due enrollments advanced per second.

N enrollments (100k at full scale, bulk_create) wait on a `wait` step whose time has passed;
an `exit` step follows. Measured:

- beat path (the headline figure, the issue's "beat-driven claimer"):
  `journeys.tasks.schedule_due` called at the beat interval (SCHEDULER_INTERVAL_SECONDS)
  with one threads-pool worker (-c 8) running `advance_enrollments`, as configured; the
  clock stops when no live enrollment is left. schedule_due claims at most 10 batches of
  SCHEDULER_BATCH_SIZE per tick, so it can never exceed 10 * batch / interval (1000/s as
  configured) however fast the worker is;
- in-process (attribution): the same claim (`enrollments_claim_due`, batches of
  SCHEDULER_BATCH_SIZE) and `enrollments_advance` in this process, without the broker.

Baselines, raw SQL on one connection, same table, same claim and batch size: claim a batch
with `SELECT ... FOR UPDATE SKIP LOCKED` (pushing next_run_at out by the lease, in one
UPDATE), then lock the claimed rows again with `FOR UPDATE SKIP LOCKED` and end each with
one UPDATE:
- "same transactions as the product": one transaction per ADVANCE_BATCH (50) claimed rows
  (one lock query for them, one UPDATE per row, one commit), as `enrollments_advance` does;
- "per row": one transaction per row (lock, UPDATE, commit): the baseline of the first
  measurements, when the product advanced each enrollment in its own transaction.

Goal (issue 7): the beat path >= 0.3x the bare loop.
"""

from __future__ import annotations

import datetime as dt
import os
import time

from bench import common as c

N = c.scaled(100_000, 1000)
WORKER_N = int(os.environ.get("BENCH_SCHEDULER_WORKER_N", str(N)))


def setup_journey():
    from journeys.models import Journey, Step

    journey = Journey.objects.create(
        name="Bench scheduler",
        slug="bench-scheduler",
        status=Journey.Status.ACTIVE,
        trigger_event="bench.never",
        entry_policy=Journey.EntryPolicy.EVERY_TIME,
    )
    wait = Step.objects.create(
        journey=journey, position=0, key="wait", kind="wait", config={"duration_seconds": 60}
    )
    Step.objects.create(journey=journey, position=1, key="done", kind="exit", config={})
    return journey, wait


def make_due(journey, wait, contact_ids: list[int]) -> None:
    """Fresh tables, then N enrollments whose wait ended an hour ago."""
    from django.db import connection
    from django.utils import timezone

    from journeys.models import Enrollment

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE journeys_stepvisit, journeys_enrollment, messaging_touchpoint CASCADE"
        )
    past = timezone.now() - dt.timedelta(hours=1)
    state = {
        "key": "wait",
        "started_at": (past - dt.timedelta(minutes=1)).isoformat(),
        "until": past.isoformat(),
    }
    Enrollment.objects.bulk_create(
        [
            Enrollment(
                journey=journey,
                contact_id=cid,
                entry_policy="every_time",
                state="waiting",
                current_step=wait,
                next_run_at=past,
                wait_until=past,
                context={"event": {"name": "bench"}, "steps": {}, "step": state},
            )
            for cid in contact_ids
        ],
        batch_size=5000,
    )
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE journeys_enrollment")


def live() -> int:
    from journeys.models import Enrollment

    return Enrollment.objects.filter(state__in=Enrollment.LIVE_STATES).count()


def in_process(batch: int) -> float:
    from journeys.engine import enrollments_advance, enrollments_claim_due

    started = time.perf_counter()
    done = 0
    while ids := enrollments_claim_due(limit=batch, lease_seconds=60):
        enrollments_advance(enrollment_ids=ids)  # what advance_enrollments runs, per chunk
        done += len(ids)
    seconds = time.perf_counter() - started
    assert live() == 0, "enrollments left live"
    return done / seconds


CLAIM = """
UPDATE journeys_enrollment SET next_run_at = now() + interval '60 seconds'
WHERE id IN (
    SELECT id FROM journeys_enrollment
    WHERE state IN ('active', 'waiting') AND next_run_at <= now()
    ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED
) RETURNING id
"""
LOCK = (
    "SELECT id FROM journeys_enrollment WHERE id = ANY(%s) AND state IN ('active', 'waiting') "
    "ORDER BY id FOR UPDATE SKIP LOCKED"
)
END = """
UPDATE journeys_enrollment SET state = 'exited', next_run_at = NULL, ended_at = now(),
    updated_at = now() WHERE id = %s
"""


def bare_sql(batch: int, per_transaction: int) -> float:
    """Claim `batch` rows, then lock and end them `per_transaction` rows per transaction."""
    with c.pg_connect() as conn:
        started = time.perf_counter()
        done = 0
        while True:
            with conn.cursor() as cur:
                cur.execute(CLAIM, (batch,))
                ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            for start in range(0, len(ids), per_transaction):
                with conn.cursor() as cur:
                    cur.execute(LOCK, (ids[start : start + per_transaction],))
                    for (enrollment_id,) in cur.fetchall():
                        cur.execute(END, (enrollment_id,))
                conn.commit()
            done += len(ids)
        seconds = time.perf_counter() - started
    assert live() == 0, "enrollments left live"
    return done / seconds


def beat_path(worker) -> float:
    """schedule_due at the beat interval (run here, as beat would have it run) with the
    worker advancing what it queues; the clock stops when no live enrollment is left."""
    from django.conf import settings

    from journeys.tasks import schedule_due

    started = time.perf_counter()
    next_tick = started
    while live():
        if time.perf_counter() >= next_tick:
            schedule_due()  # what beat runs every SCHEDULER_INTERVAL_SECONDS
            next_tick += settings.SCHEDULER_INTERVAL_SECONDS
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {c.LOG_DIR}")
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"{live()} enrollments still live after 600 s")
        time.sleep(0.02)
    return WORKER_N / (time.perf_counter() - started)


def main() -> None:
    c.django_setup()
    from django.conf import settings

    from journeys.engine import ADVANCE_BATCH

    batch = settings.SCHEDULER_BATCH_SIZE
    c.header(
        "3. Journey scheduler",
        due_enrollments=N,
        batch=f"SCHEDULER_BATCH_SIZE={batch}, beat every {settings.SCHEDULER_INTERVAL_SECONDS} s",
        journey="wait (already over) -> exit",
    )
    with c.bench_services():
        from messaging.models import Contact

        Contact.objects.bulk_create(
            [Contact(external_id=f"sched-{i}", phone=f"+14152{i:06d}") for i in range(N)],
            batch_size=5000,
        )
        contacts = list(Contact.objects.order_by("id").values_list("id", flat=True))
        journey, wait = setup_journey()
        # One round measures all four back to back, so load from other processes on the
        # shared machine hits the product and its baselines alike.
        from bench.send_throughput import wait_ready

        worker = c.start_worker("scheduler-worker")
        rates, engine_rates, bare_rates, per_row_rates = [], [], [], []
        try:
            wait_ready([worker])
            for _ in range(c.RUNS):
                make_due(journey, wait, contacts)
                bare_rates.append(bare_sql(batch, ADVANCE_BATCH))
                make_due(journey, wait, contacts)
                per_row_rates.append(bare_sql(batch, 1))
                make_due(journey, wait, contacts)
                engine_rates.append(in_process(batch))
                make_due(journey, wait, contacts[:WORKER_N])
                rates.append(beat_path(worker))
        finally:
            c.stop(worker)
        bare = f"bare SQL claim (SKIP LOCKED, batch {batch}) + lock/update"
        c.report(
            c.Figure(
                "scheduler",
                "beat schedule_due -> advance_enrollments on 1 worker (threads -c 8)",
                "enrollments/s",
                rates,
                f"{bare}, same transactions as the product ({ADVANCE_BATCH} rows each)",
                bare_rates,
                goal=">= 0.3",
            )
        )
        c.report(
            c.Figure(
                "scheduler",
                "beat schedule_due -> advance_enrollments, vs the per-row bare loop",
                "enrollments/s",
                rates,
                f"{bare}, one transaction per row",
                per_row_rates,
            )
        )
        c.report(
            c.Figure(
                "scheduler",
                "(attribution) claim + enrollments_advance, in-process",
                "enrollments/s",
                engine_rates,
                f"{bare}, {ADVANCE_BATCH} rows per transaction (above)",
                bare_rates,
            )
        )


if __name__ == "__main__":
    main()
