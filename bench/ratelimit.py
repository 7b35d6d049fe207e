"""6. Provider rate limits: the global per-sender GCRA bucket (channels_app.ratelimit, in
Redis) keeps SMS sends at TWILIO_SMS_MPS across 4 worker processes (each
`celery worker --pool threads -c 8`).

N queued SMS from one sender are delivered through the real task; the rate is read from the
simulator's own receive times (`received_at` of each recorded message), over the steady-state
window: the middle 80 % of the messages in arrival order. Measured with the workers as
configured.

Baseline: the configured rate. Goal: within 5 % of it.
Quick run: TWILIO_SMS_MPS=20 (default here); long run: BENCH_MPS=1 BENCH_RATELIMIT_N=600.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from datetime import datetime

from bench import common as c
from bench.send_throughput import make_contacts, make_messages

MPS = float(os.environ.get("BENCH_MPS", "20"))
N = int(os.environ.get("BENCH_RATELIMIT_N", str(max(200, round(MPS * 10)))))
WORKERS = 4
CONCURRENCY = int(os.environ.get("CELERY_WORKER_CONCURRENCY", "8"))


def sim_get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def sim_reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_sim/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def steady_rate(sim_url: str) -> tuple[float, int]:
    records = sim_get(f"{sim_url}/_sim/messages?direction=outbound")
    times = sorted(datetime.fromisoformat(r["received_at"]).timestamp() for r in records)
    cut = len(times) // 10
    window = times[cut : len(times) - cut]
    return (len(window) - 1) / (window[-1] - window[0]), len(records)


def one_variant(include: str, sim_url: str, contacts: list[int]) -> tuple[list[float], dict]:
    from config.celery import app
    from messaging.models import Message
    from messaging.services import enqueue_delivery

    workers = [
        c.start_worker(
            f"ratelimit-worker-{i}",
            concurrency=CONCURRENCY,
            include=include,
            simulator_url=sim_url,
            TWILIO_SMS_MPS=str(MPS),
        )
        for i in range(WORKERS)
    ]
    rates, info = [], {"recorded": [], "duplicates": 0}
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=1, limit=WORKERS)) < WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {c.LOG_DIR}")
        for _ in range(c.RUNS):
            sim_reset(sim_url)
            ids = make_messages(contacts)
            for mid in ids:
                enqueue_delivery(mid)
            deadline = time.monotonic() + 120 + 3 * N / MPS
            while Message.objects.filter(pk__in=ids, status="queued").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("messages still queued")
                time.sleep(0.2)
            while Message.objects.filter(pk__in=ids, status="sending").exists():
                time.sleep(0.05)
            rate, recorded = steady_rate(sim_url)
            rates.append(rate)
            info["recorded"].append(recorded)
            info["duplicates"] += recorded - len(set(ids))
    finally:
        for w in workers:
            c.stop(w)
    return rates, info


def main() -> None:
    c.django_setup()
    c.header(
        "6. Provider rate limit",
        configured=f"TWILIO_SMS_MPS={MPS:g}, one sender",
        workers=f"{WORKERS} x celery worker --pool threads -c {CONCURRENCY}",
        messages_per_run=N,
    )
    with c.bench_services():
        contacts = make_contacts(N)
        sim, url = c.start_simulator(latency_ms=0, name="simulator-ratelimit")
        for variant, include in (("as configured", ""),):
            rates, info = one_variant(include, url, contacts)
            c.report(
                c.Figure(
                    "ratelimit",
                    f"SMS sends/s at the simulator, 4 workers, {variant}",
                    "msg/s",
                    rates,
                    "configured TWILIO_SMS_MPS",
                    [MPS] * c.RUNS,
                    goal="within 0.05",
                    notes=info,
                )
            )
        c.stop(sim)


if __name__ == "__main__":
    main()
