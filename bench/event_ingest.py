"""2. Event ingest: requests/s on POST /api/v1/events/ through gunicorn, driven by wrk from a
second process, against a bare DRF endpoint answering 202 in the same server (bench/urls.py).

The blueprints are installed and active, so every `order.completed` would enroll the contact
in post-purchase. The endpoint stores the event and answers 202; applying it (matching
journeys, enrolling) is a worker's job (`journeys.process_events`, kicked once per burst onto
the broker). No worker runs here, so this measures the request alone; bench/fanout.py
measures applying, until enrolled. Contacts come from a pool of BENCH_INGEST_CONTACTS external
ids (upserted), and each request has a new Idempotency-Key; the replay figure re-posts keys
already stored.

Server: gunicorn gthread, BENCH_GUNICORN_WORKERS x BENCH_GUNICORN_THREADS (default 2 x 4 on 2
cores: one process per core, threads to overlap database waits; keep-alive on). Client: wrk,
BENCH_WRK_CONNECTIONS keep-alive connections on 2 threads, BENCH_DURATION s per run.

Goals: new keys >= 0.35x the bare endpoint; replayed keys >= 0.6x.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from bench import common as c

WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "4"))
CONNECTIONS = int(os.environ.get("BENCH_WRK_CONNECTIONS", "16"))
DURATION = int(os.environ.get("BENCH_DURATION", "4"))
CONTACTS = int(os.environ.get("BENCH_INGEST_CONTACTS", "1000"))
REPLAY_KEYS = 200  # per wrk thread
LUA = str(c.ROOT / "bench" / "events.lua")


def wrk(url: str, path: str, key: str, mode: str, prefix: str, seconds: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            LUA,
            url,
            "--",
            path,
            key,
            mode,
            prefix,
            str(CONTACTS),
            str(REPLAY_KEYS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"RESULT (.*)", out.stdout)
    if not match:
        raise RuntimeError(f"wrk said: {out.stdout}\n{out.stderr}")
    fields = {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    fields["rps"] = fields["requests"] / (fields["duration_us"] / 1e6)
    return fields


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    c.django_setup()
    c.header(
        "2. Event ingest",
        server=f"gunicorn gthread {WORKERS} workers x {THREADS} threads, keep-alive",
        client=f"wrk -t2 -c{CONNECTIONS}, {DURATION} s per run, Lua body per request",
    )
    with c.bench_services():
        from journeys.blueprints import install_blueprints
        from journeys.models import Enrollment, Event
        from messaging.api_auth import ALL_SCOPES
        from messaging.models import ApiKey

        install_blueprints(activate=True)
        _, key = ApiKey.objects.create_key(name="bench", scopes=list(ALL_SCOPES))
        port = c.free_port()
        server = c.start(
            "gunicorn",
            [
                c.PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "-b",
                f"127.0.0.1:{port}",
                "--worker-class",
                "gthread",
                "--workers",
                str(WORKERS),
                "--threads",
                str(THREADS),
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
            ],
            DJANGO_SETTINGS_MODULE="bench.settings",
        )
        c.wait_for_port(port, server)
        url = f"http://127.0.0.1:{port}"
        events = "/api/v1/events/"
        # Warm-up: every worker imports and connects; the contact pool gets created; the
        # replay keys get stored (the first REPLAY_KEYS requests of each wrk thread).
        wrk(url, "/bench/bare/", key, "new", "warm-bare", 2)
        wrk(url, events, key, "new", "warm", 3)
        wrk(url, events, key, "replay", "replay", 3)
        results: dict[str, list[float]] = {"bare": [], "auth": [], "new": [], "replay": []}
        errors: dict[str, int] = dict.fromkeys(results, 0)
        latency: dict[str, list[float]] = {name: [] for name in results}
        for run in range(c.RUNS):
            for name, path, mode in (
                ("bare", "/bench/bare/", "new"),
                ("auth", "/bench/auth-noop/", "new"),
                ("new", events, "new"),
                ("replay", events, "replay"),
            ):
                prefix = "replay" if mode == "replay" else f"run{run}-{name}"
                out = wrk(url, path, key, mode, prefix, DURATION)
                results[name].append(out["rps"])
                errors[name] += out["errors_status"]
                latency[name].append(out["p50_us"] / 1000)
        stored = Event.objects.count()
        applied = Event.objects.filter(processed_at__isnull=False).count()
        enrolled = Enrollment.objects.count()
        c.stop(server)
        notes = {
            "non-2xx responses": errors,
            "p50 latency ms (per run)": {k: [round(v, 1) for v in vs] for k, vs in latency.items()},
            "events stored / applied / enrollments (no worker runs)": (
                f"{stored} / {applied} / {enrolled}"
            ),
        }
        c.report(
            c.Figure(
                "ingest",
                "POST /api/v1/events/, new keys",
                "req/s",
                results["new"],
                "bare DRF 202 endpoint",
                results["bare"],
                goal=">= 0.35",
                notes=notes,
            )
        )
        c.report(
            c.Figure(
                "ingest",
                "POST /api/v1/events/, replayed keys",
                "req/s",
                results["replay"],
                "bare DRF 202 endpoint",
                results["bare"],
                goal=">= 0.6",
            )
        )
        c.report(
            c.Figure(
                "ingest",
                "auth + scope + throttle, no work (attribution)",
                "req/s",
                results["auth"],
                "bare DRF 202 endpoint",
                results["bare"],
            )
        )


if __name__ == "__main__":
    main()
