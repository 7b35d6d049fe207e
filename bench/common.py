"""Shared helpers for the benchmarks: environment, a throw-away database, child processes,
and how figures are printed (median of runs, ratio against a baseline from the same run).

Every benchmark runs against its own PostgreSQL database (`touchline_bench`, created and
dropped here) and its own Redis db number (11 by default), so the test suite and other
developers' processes on the same services are undisturbed. Nothing here touches the shared
PostgreSQL/Redis configuration.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

SCALE = float(os.environ.get("BENCH_SCALE", "0.01"))
RUNS = max(3, int(os.environ.get("BENCH_RUNS", "3")))
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
DB_NAME = os.environ.get("BENCH_DB", "touchline_bench")
# A migrated database to clone instead of migrating again (bench/run_all makes one).
TEMPLATE_DB = os.environ.get("BENCH_TEMPLATE_DB", "")
REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "11"))
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", str(ROOT / ".data" / "bench")))
LOG_DIR = DATA_DIR / "logs"
RESULTS = Path(os.environ.get("BENCH_RESULTS", str(DATA_DIR / "results.jsonl")))


def scaled(full: int, minimum: int = 1) -> int:
    """A size from the issue (`full`) scaled by BENCH_SCALE, never below `minimum`."""
    return max(minimum, round(full * SCALE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Environment ------------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for in-process Django and for every child process."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    env = {
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{DB_NAME}",
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-only-secret-not-for-production",
        "DEBUG": "0",
        "TOUCHLINE_DATA_DIR": str(DATA_DIR),
        "ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
        # The per-key API throttle (1200/min by default) would turn a load test into 429s;
        # it still runs (one Redis round trip per request), only the limit is raised.
        "API_RATE_LIMIT": "100000000/min",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def apply_env(**extra: str) -> dict[str, str]:
    """Put bench_env() into os.environ (before django.setup()); returns it."""
    env = bench_env(**extra)
    for name, value in env.items():
        os.environ.setdefault(name, value)
    return env


def django_setup(**extra: str) -> None:
    apply_env(**extra)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(bench_env())
    env.update(extra)
    return env


# --- PostgreSQL and Redis ---------------------------------------------------------------


def psql(sql: str, database: str = "postgres", attempts: int = 30) -> str:
    """Run SQL with psql; retries while the server is out of connection slots (the test
    suites of other developers share it)."""
    for attempt in range(attempts):
        out = subprocess.run(
            [
                "psql",
                "-h",
                PG_HOST,
                "-p",
                str(PG_PORT),
                "-U",
                PG_USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            return out.stdout.strip()
        if "too many clients" not in out.stderr or attempt == attempts - 1:
            raise RuntimeError(f"psql failed: {sql}\n{out.stderr}")
        time.sleep(2)
    raise AssertionError("unreachable")


def database_exists(name: str) -> bool:
    return psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"  # noqa: S608


def drop_database(name: str = DB_NAME) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_into(name: str) -> None:
    drop_database(name)
    psql(f'CREATE DATABASE "{name}"')
    env = child_env(DATABASE_URL=f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}")
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def create_database() -> None:
    """A fresh, migrated `touchline_bench` (cloned from BENCH_TEMPLATE_DB when given)."""
    if TEMPLATE_DB and database_exists(TEMPLATE_DB):
        drop_database(DB_NAME)
        psql(f'CREATE DATABASE "{DB_NAME}" TEMPLATE "{TEMPLATE_DB}"')
    else:
        migrate_into(DB_NAME)


def redis_client():
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)


def flush_redis() -> None:
    """Empty only the benchmark's own Redis db."""
    redis_client().flushdb()


@contextlib.contextmanager
def bench_services() -> Iterator[None]:
    """A fresh database and an empty Redis db for one benchmark; both cleaned up after."""
    flush_redis()
    create_database()
    try:
        yield
    finally:
        stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        flush_redis()
        if not os.environ.get("BENCH_KEEP_DB"):
            drop_database(DB_NAME)


# --- Child processes --------------------------------------------------------------------

_children: list[subprocess.Popen] = []


def start(name: str, args: Sequence[str], **env: str) -> subprocess.Popen:
    """Start a child in its own process group, output to .data/bench/logs/<name>.log."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        list(args),
        cwd=ROOT,
        env=child_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc._bench_log = log  # type: ignore[attr-defined]
    proc._bench_name = name  # type: ignore[attr-defined]
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the child's process group (ours: started with start_new_session), then KILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the group, if any
    log = getattr(proc, "_bench_log", None)
    if log:
        log.close()
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc)


atexit.register(stop_all)


def _on_signal(signum: int, frame: Any) -> None:
    stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}; see {LOG_DIR}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def start_simulator(latency_ms: int = 0, name: str = "simulator") -> tuple[subprocess.Popen, str]:
    """`manage.py provider_simulator` without callbacks; returns (process, base URL)."""
    port = free_port()
    proc = start(
        name,
        [
            PYTHON,
            "manage.py",
            "provider_simulator",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            "--no-callbacks",
        ],
    )
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def start_worker(
    name: str,
    *,
    concurrency: int = 8,
    include: str = "",
    simulator_url: str = "",
    loglevel: str = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
    **env: str,
) -> subprocess.Popen:
    """`celery -A config worker --pool threads -c N` as production runs it (no beat)."""
    args = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "threads",
        "-c",
        str(concurrency),
        "--loglevel",
        loglevel,
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if include:
        args += ["-I", include]
    if simulator_url:
        env = {"TWILIO_API_BASE_URL": simulator_url, "SENDGRID_API_HOST": simulator_url, **env}
    return start(name, args, **env)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Statistics and reporting -----------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


@dataclass
class Figure:
    """One reported figure: the product's runs, the baseline's runs, the goal on the ratio."""

    bench: str
    name: str
    unit: str
    runs: list[float]
    baseline_name: str
    baseline_runs: list[float]
    goal: str = ""  # on the ratio: ">= 0.30", "<= 2" or "within 0.05" (of 1)
    higher_is_better: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return median(self.runs)

    @property
    def baseline(self) -> float:
        return median(self.baseline_runs)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, target = self.goal.split()
        if op == "within":  # |ratio - 1| <= target
            return abs(self.ratio - 1) <= float(target)
        return self.ratio >= float(target) if op == ">=" else self.ratio <= float(target)

    def line(self) -> str:
        verdict = ""
        if self.met is not None:
            verdict = f"  goal {self.goal}{'' if 'within' in self.goal else 'x'}: " + (
                "MET" if self.met else "NOT MET"
            )
        runs = ", ".join(fmt(v) for v in self.runs)
        base = ", ".join(fmt(v) for v in self.baseline_runs)
        return (
            f"[{self.bench}] {self.name}: {fmt(self.value)} {self.unit} (runs {runs})\n"
            f"    baseline {self.baseline_name}: {fmt(self.baseline)} {self.unit} (runs {base})\n"
            f"    ratio {self.ratio:.3f}x{verdict}"
        )


def report(figure: Figure) -> Figure:
    print(figure.line(), flush=True)
    for key, value in figure.notes.items():
        print(f"    {key}: {value}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(
            json.dumps(
                {
                    "bench": figure.bench,
                    "name": figure.name,
                    "unit": figure.unit,
                    "value": figure.value,
                    "runs": figure.runs,
                    "baseline_name": figure.baseline_name,
                    "baseline": figure.baseline,
                    "baseline_runs": figure.baseline_runs,
                    "ratio": figure.ratio,
                    "goal": figure.goal,
                    "met": figure.met,
                    "scale": SCALE,
                    "notes": figure.notes,
                },
                default=str,
            )
            + "\n"
        )
    return figure


def header(title: str, **facts: Any) -> None:
    print(f"\n=== {title} (BENCH_SCALE={SCALE}, {RUNS} runs, median) ===", flush=True)
    for key, value in facts.items():
        print(f"    {key}: {value}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def pg_connect(attempts: int = 30):
    """A bare psycopg connection to the benchmark database (retries while the shared server is
    out of connection slots)."""
    import psycopg

    for attempt in range(attempts):
        try:
            return psycopg.connect(os.environ["DATABASE_URL"])
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")
