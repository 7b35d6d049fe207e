"""4. Fan-out: N contacts enrolled by N `order.completed` events through the batch endpoint
(POST /api/v1/events/batch/, 1000 events per request), in-process through DRF's test client
(the blueprints active, each event enrolling its contact in post-purchase). The API stores
the events and a worker applies them; here the worker's service (`events_apply_pending`) runs
in-process after each request, inside the timing and the query count, so the figure is
events/s until enrolled.

Reported: events/s at 1k and at the largest size (BENCH_SCALE x 100k, at least 2k), and the
queries per event, counted with a `connection.execute_wrapper` counter (CaptureQueriesContext
keeps only the last 9000 queries, fewer than one batch makes) around one whole batch of 1000:
the only batch of the 1k run and the last batch of the largest run, when the tables already
hold N-1000 events. They must be equal (+-1): a per-event cost growing with the table would
show here. The baseline of the events/s figure is the 1k run (ratio ~1 means linear).
"""

from __future__ import annotations

import time

from bench import common as c

BATCH = 1000
SMALL = 1000
LARGE = c.scaled(100_000, 2000) // BATCH * BATCH


def events(start: int, count: int, tag: str) -> list[dict]:
    return [
        {
            "name": "order.completed",
            "idempotency_key": f"{tag}-{i}",
            "contact": {
                "external_id": f"fan-{tag}-{i}",
                "phone": f"+14152{i % 1_000_000:06d}",
                "first_name": "Ada",
            },
            "properties": {"order_id": f"{tag}-{i}", "total": 49.9},
        }
        for i in range(start, start + count)
    ]


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE journeys_event, journeys_enrollment, messaging_touchpoint, "
            "messaging_contact CASCADE"
        )
    c.flush_redis()


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def post_and_apply(client, batch: list[dict]) -> None:
    """One batch request, then what the `process_events` task does with it (in-process: the
    work ends when the events are applied, i.e. the contacts enrolled)."""
    from journeys.services import events_apply_pending

    response = client.post("/api/v1/events/batch/", {"events": batch}, format="json")
    assert response.status_code == 200, response.content[:500]
    bad = [r for r in response.json()["results"] if r["status"] != 202]
    assert not bad, bad[:3]
    assert events_apply_pending() == len(batch)


def run(client, size: int, tag: str) -> tuple[float, float]:
    """events/s over `size` events (stored and applied), and queries per event in the last
    batch."""
    from django.db import connection

    from journeys.models import Enrollment

    reset()
    batches = [events(start, BATCH, tag) for start in range(0, size, BATCH)]
    counter = QueryCounter()
    started = time.perf_counter()
    for index, batch in enumerate(batches):
        if index == len(batches) - 1:
            with connection.execute_wrapper(counter):
                post_and_apply(client, batch)
        else:
            post_and_apply(client, batch)
    seconds = time.perf_counter() - started
    assert Enrollment.objects.count() == size, "every event enrolled its contact"
    return size / seconds, counter.count / BATCH


def main() -> None:
    c.django_setup()
    c.header("4. Fan-out", sizes=f"{SMALL} and {LARGE} events", batch=BATCH)
    with c.bench_services():
        from rest_framework.test import APIClient

        from journeys.blueprints import install_blueprints
        from journeys.models import Enrollment
        from messaging.api_auth import ALL_SCOPES
        from messaging.models import ApiKey

        install_blueprints(activate=True)
        _, key = ApiKey.objects.create_key(name="bench", scopes=list(ALL_SCOPES))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        # Warm-up: imports, caches, connections.
        post_and_apply(client, events(0, 100, "warm"))
        small_rates, large_rates, small_qs, large_qs = [], [], [], []
        for r in range(c.RUNS):
            rate, q = run(client, SMALL, f"s{r}")
            small_rates.append(rate)
            small_qs.append(q)
            rate, q = run(client, LARGE, f"l{r}")
            large_rates.append(rate)
            large_qs.append(q)
            enrolled = Enrollment.objects.count()
        reset()
        small_q, large_q = max(small_qs), max(large_qs)
        equal = abs(large_q - small_q) <= 1
        c.report(
            c.Figure(
                "fanout",
                f"batch endpoint, {LARGE} events",
                "events/s",
                large_rates,
                f"same endpoint, {SMALL} events",
                small_rates,
                notes={
                    "queries per event at 1k (runs)": small_qs,
                    f"queries per event at {LARGE} (runs)": large_qs,
                    "queries per event constant (+-1)": "yes" if equal else "NO",
                    f"enrollments after {LARGE} events": enrolled,
                },
            )
        )
        assert equal, f"queries per event grew: {small_q} at 1k, {large_q} at {LARGE}"


if __name__ == "__main__":
    main()
