"""Fault-injection harness: real Celery workers and beat as subprocesses, a private redis-server,
a web server subprocess, the provider simulator, and the audit every fault test ends with.

The tests prove that no failure of a worker, the broker or a provider loses or duplicates a
message. They run real processes against PostgreSQL and Redis: on SQLite or without a Redis
broker they are skipped with the reason printed (CI has both). `FAULTS_N` sizes them (default
200; `scripts/faults` runs 2000).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.conf import settings

from channels_app.simulator import Simulator, start_simulator
from config.celery import app as celery_app
from journeys.models import Journey, Step
from messaging.models import Message, Template, Touchpoint
from tests.conftest import _simulator_config

BASE_DIR = Path(settings.BASE_DIR)
FAULTS_N = int(os.environ.get("FAULTS_N", "200"))
# Statuses after which delivery is over for these tests (`sent` may still become `delivered`).
SETTLED = ("sent", "delivered", "read", "failed", "undelivered", "skipped", "unknown")
IN_FLIGHT = ("queued", "sending")


def scaled_timeout(base: float, per_message: float) -> float:
    """A pytest-timeout for a test whose work grows with FAULTS_N."""
    return max(300.0, base + per_message * FAULTS_N)


def budget(base: float, per_message: float) -> float:
    """How long a wait may take when the work grows with FAULTS_N."""
    return base + per_message * FAULTS_N


# --- Only on PostgreSQL + Redis -----------------------------------------------------------------


def _unsupported_reason() -> str | None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        return (
            f"fault tests need PostgreSQL (row locks, SKIP LOCKED, several processes on one "
            f"database); this run uses {engine}. Set DATABASE_URL=postgres://… (CI does)."
        )
    if not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        return (
            f"fault tests need a Redis broker; this run uses {settings.CELERY_BROKER_URL!r}. "
            "Set CELERY_BROKER_URL=redis://… (CI does)."
        )
    if not shutil.which("redis-server"):
        return "fault tests need the redis-server binary (to run a private broker they restart)."
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    if not ours:
        return
    reason = _unsupported_reason()
    if reason is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"!! tests/faults skipped: {reason}", yellow=True, bold=True)
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=reason))


# --- Small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    state: Callable[[], Any] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout`
    (with `state()` in the message, to show where things stand)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            now = f"; now: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{now}")
        time.sleep(interval)


def db_state(journey=None) -> dict[str, Any]:
    """Message statuses and enrollment states, for timeout messages."""
    from django.db.models import Count

    from journeys.models import Enrollment

    enrollments = Enrollment.objects.all()
    if journey is not None:
        enrollments = enrollments.filter(journey=journey)
    from journeys.models import Event

    return {
        "unapplied_events": Event.objects.filter(processed_at__isnull=True).count(),
        "messages": dict(Message.objects.values_list("status").annotate(n=Count("pk")).order_by()),
        "enrollments": dict(enrollments.values_list("state").annotate(n=Count("pk")).order_by()),
    }


def summary(name: str, **counts: Any) -> str:
    """The one summary line a fault test prints."""
    line = f"FAULTS {name}: " + " ".join(f"{key}={value}" for key, value in counts.items())
    print("\n" + line, flush=True)
    return line


def database_url() -> str:
    """The test database (pytest-django renamed it) as a URL for subprocesses."""
    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of a live process, None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    return [p for p in _all_pids() if (stat := _proc_stat(p)) and stat[0] == pid]


def group_members(pgid: int) -> list[int]:
    return [p for p in _all_pids() if (stat := _proc_stat(p)) and stat[1] == pgid]


def alive(pid: int) -> bool:
    return _proc_stat(pid) is not None


# --- Processes --------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    kind: str  # worker-prefork, worker-threads, beat, web, redis, script
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Cluster:
    """Every subprocess a fault test starts, each in its own process group, all of them
    killed (whole groups, orphans included) when the test ends."""

    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    kills: int = 0
    _seq: int = 0

    def spawn(self, name: str, kind: str, args: list[str], env: dict[str, str]) -> Proc:
        self._seq += 1
        log = self.tmp / f"{self._seq:03d}-{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # own process group: cleanup reaches orphans too
        )
        handle.close()
        proc = Proc(name=name, kind=kind, popen=popen, log=log)
        self.procs.append(proc)
        return proc

    # Touchline's processes ------------------------------------------------------------------
    def worker(self, env: dict[str, str], *, pool: str = "prefork", concurrency: int = 3) -> Proc:
        name = f"w{self._seq + 1}-{pool}"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--hostname",
            f"faults-{name}-{uuid.uuid4().hex[:6]}@%h",
            # No --without-heartbeat: with the Redis transport and acks_late the heartbeat timer
            # is what wakes the consumer to fetch again; without it a worker idles ~10 s.
            "--without-gossip",
            "--without-mingle",
        ]
        # The settings' CELERY_WORKER_POOL wins over --pool: set both.
        env = {**env, "CELERY_WORKER_POOL": pool, "CELERY_WORKER_CONCURRENCY": str(concurrency)}
        return self.spawn(name, f"worker-{pool}", args, env)

    def beat(self, env: dict[str, str]) -> Proc:
        schedule = self.tmp / f"beat-schedule-{self._seq + 1}"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(schedule),
            "--max-interval",
            "1",
        ]
        return self.spawn("beat", "beat", args, env)

    def web(self, env: dict[str, str], port: int) -> Proc:
        args = [
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--skip-checks",
        ]
        proc = self.spawn("web", "web", args, env)
        wait_until(
            lambda: _connects(port) or _died(proc),
            timeout=60,
            what=f"the web server on 127.0.0.1:{port}",
        )
        assert proc.running(), proc.log_text()[-3000:]
        return proc

    def script(self, name: str, code: str, env: dict[str, str]) -> Proc:
        return self.spawn(name, "script", [sys.executable, "-c", code], env)

    def wait_ready(self, *workers: Proc, timeout: float = 90) -> None:
        for proc in workers:
            wait_until(
                lambda p=proc: " ready." in p.log_text() or not p.running(),
                timeout=timeout,
                what=f"worker {proc.name} to be ready",
                interval=0.1,
            )
            assert proc.running(), f"{proc.name} died while starting:\n{proc.log_text()[-3000:]}"

    # Faults -----------------------------------------------------------------------------------
    def sigkill(self, pid: int) -> bool:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kills += 1
        return True

    def sigkill_group(self, proc: Proc) -> None:
        """The whole machine dies: the process and its children at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            self.kills += 1
        proc.popen.wait(timeout=10)

    def live_workers(self, pool: str | None = None, *, ready: bool = False) -> list[Proc]:
        return [
            p
            for p in self.procs
            if p.kind.startswith("worker")
            and p.running()
            and (pool is None or pool in p.kind)
            and (not ready or " ready." in p.log_text())
        ]

    # Cleanup ----------------------------------------------------------------------------------
    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)
        for pid in group_members(proc.pid):  # orphans of a killed parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> list[int]:
        """Stop everything; returns pids that survived (should be none)."""
        for proc in reversed(self.procs):
            self.stop(proc, signal.SIGKILL if proc.kind == "redis" else signal.SIGTERM)
        survivors: list[int] = []
        deadline = time.monotonic() + 10
        for proc in self.procs:
            while (left := group_members(proc.pid)) and time.monotonic() < deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            survivors += group_members(proc.pid)
        return survivors


try:  # loaded here, not after fork
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: be SIGKILLed if the test process dies without cleaning up
    (its own session keeps it out of reach of the terminal's Ctrl-C)."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _died(proc: Proc) -> bool:
    return not proc.running()


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Subprocesses of one test; the producer side of this process publishes for real."""
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    logs = tmp_path / "logs"
    logs.mkdir()
    found = Cluster(tmp=logs)
    yield found
    survivors = found.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if (failed is not None and failed.failed) or os.environ.get("FAULTS_KEEP_LOGS"):
        print(f"\nfault test logs kept in {logs}")
    assert not survivors, f"processes left running: {survivors}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- Broker -----------------------------------------------------------------------------------


def purge_broker(url: str) -> None:
    """Empty the queue and the unacked store of a broker database this run owns. The flags
    that say "a task is already queued" go with the tasks: a flag left by an earlier test
    whose task was purged would hold back this test's kicks until it expires (30 s), and
    these tests run no beat sweeper to cover for it."""
    from django.core.cache import cache

    from journeys.services import EVENTS_KICK_FLAG
    from journeys.tasks import CHAIN_KEY

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.delete("celery", "unacked", "unacked_index", "unacked_mutex")
    finally:
        client.close()
    cache.delete_many([EVENTS_KICK_FLAG, CHAIN_KEY])


def queue_length(url: str) -> int:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return int(client.llen("celery"))
    finally:
        client.close()


@dataclass
class PrivateRedis:
    """A redis-server of our own that keeps nothing: killing it loses every queued task."""

    cluster: Cluster
    port: int
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.cluster.tmp),
        ]
        self.proc = self.cluster.spawn(f"redis-{self.port}", "redis", args, dict(os.environ))
        wait_until(self._pong, timeout=20, what=f"redis-server on port {self.port}", interval=0.05)

    def _pong(self) -> bool:
        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.cluster.sigkill(self.proc.pid)
        self.proc.popen.wait(timeout=10)


@pytest.fixture
def private_redis(cluster: Cluster) -> PrivateRedis:
    server = PrivateRedis(cluster=cluster, port=free_port())
    server.start()
    return server


# --- Environment for Touchline's subprocesses -------------------------------------------------


def touchline_env(
    sim: Simulator,
    *,
    public_base_url: str = "http://127.0.0.1:9",
    broker: str | None = None,
    **overrides: Any,
) -> dict[str, str]:
    """Environment for a worker/beat/web subprocess on the test database."""
    broker = broker or settings.CELERY_BROKER_URL
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker,
            "REDIS_URL": settings.REDIS_URL or broker,
            "PUBLIC_BASE_URL": public_base_url,
            "TWILIO_API_BASE_URL": sim.url,
            "SENDGRID_API_HOST": sim.url,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # Crash recovery on a test clock: a stuck `sending` becomes `unknown` after 5 s, a
            # `queued` message whose task was lost is re-queued after 10 s, a claimed enrollment
            # whose worker died is claimable again after 5 s.
            "MESSAGE_SENDING_TIMEOUT_SECONDS": "5",
            "MESSAGE_QUEUED_LEASE_SECONDS": "10",
            "SWEEP_INTERVAL_SECONDS": "1",
            # An accepted event whose kick was lost is applied by the sweeper after 5 s.
            "EVENT_SWEEP_AFTER_SECONDS": "5",
            # One API key posts every event of a run (2,000 and their retries at full size):
            # the per-key throttle is not what these tests are about.
            "API_RATE_LIMIT": "1000000/min",
            "SCHEDULER_INTERVAL_SECONDS": "1",
            "SCHEDULER_LEASE_SECONDS": "5",
            "PROVIDER_TIMEOUT_SECONDS": "5",
            "MESSAGE_RETRY_BASE_SECONDS": "0.5",
            "MESSAGE_RETRY_MAX_SECONDS": "4",
        }
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


@pytest.fixture
def simulators() -> Iterator[Callable[..., Simulator]]:
    """Start in-process simulators (callbacks to `public_base_url` when asked); stopped after."""
    started: list[Simulator] = []

    def start(public_base_url: str = "http://127.0.0.1:9", *, callbacks: bool = False, **inject):
        sim = start_simulator(_simulator_config(public_base_url, callbacks), port=0)
        sim.configure(callbacks=callbacks, callback_delay_ms=50, **inject)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


# --- Journeys and load ------------------------------------------------------------------------

TRIGGER = "faults.order"


def make_send_journey(slug: str = "faults", trigger: str = TRIGGER) -> Journey:
    """An active transactional journey with one SMS send step and no fallback channel."""
    Template.objects.create(
        slug=f"{slug}-sms",
        name=f"{slug} sms",
        channel="sms",
        body="Hi {{ contact.first_name }}, order {{ event.order }} is on its way.",
    )
    journey = Journey.objects.create(
        name=f"Faults {slug}",
        slug=slug,
        status=Journey.Status.ACTIVE,
        trigger_event=trigger,
        entry_policy=Journey.EntryPolicy.EVERY_TIME,
        category=Journey.Category.TRANSACTIONAL,
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="send",
        kind=Step.Kind.SEND,
        config={"channel": "sms", "template": f"{slug}-sms", "fallback_channels": []},
    )
    return journey


def phone(i: int) -> str:
    return f"+1415{2000000 + i:07d}"


def event_payload(i: int, *, prefix: str = "f", trigger: str = TRIGGER) -> dict[str, Any]:
    return {
        "name": trigger,
        "contact": {"external_id": f"{prefix}-{i}", "first_name": f"C{i}", "phone": phone(i)},
        "properties": {"order": f"{prefix}-{i}"},
        "idempotency_key": f"{prefix}-order-{i}",
    }


# --- The audit --------------------------------------------------------------------------------


@dataclass
class Audit:
    """What the simulator received against what the database holds, per Touchline id."""

    statuses: Counter
    requests: Counter  # accepted provider requests per Touchline message id
    rejected: Counter  # rejected provider requests per Touchline message id
    foreign: int  # provider requests for ids the database does not know
    messages: dict[str, Message]

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.requests.values() if count > 1)

    @property
    def in_flight(self) -> int:
        return sum(self.statuses[s] for s in IN_FLIGHT)

    @property
    def sent(self) -> int:
        return sum(self.statuses[s] for s in ("sent", "delivered", "read"))

    def problems(self) -> list[str]:
        """Every broken rule, readable."""
        found = []
        for pk, message in self.messages.items():
            got = self.requests[pk]
            if got > 1:
                found.append(f"{pk}: provider got it {got} times")
            if message.status in ("sent", "delivered", "read") and got != 1:
                found.append(f"{pk}: {message.status} but the provider got it {got} times")
            if message.status == "failed" and got:
                found.append(f"{pk}: failed but the provider accepted it")
            if message.status in ("failed", "unknown") and not message.error_message:
                found.append(f"{pk}: {message.status} without a reason")
            if message.status in IN_FLIGHT:
                found.append(f"{pk}: still {message.status}")
        if self.foreign:
            found.append(f"{self.foreign} provider requests for unknown message ids")
        return found

    def unreconciled(self) -> list[str]:
        """Messages the provider accepted that are still `unknown`: its status callback (which
        carries our id) should have settled them."""
        return [
            pk for pk, m in self.messages.items() if m.status == "unknown" and self.requests[pk]
        ]


def audit(sim: Simulator, queryset=None) -> Audit:
    rows = queryset if queryset is not None else Message.objects.filter(direction="outbound")
    messages = {str(m.pk): m for m in rows}
    requests = Counter(
        r["touchline_id"] for r in sim.messages(direction="outbound") if r.get("touchline_id")
    )
    rejected = Counter(r["touchline_id"] for r in sim.rejected() if r.get("touchline_id"))
    foreign = sum(count for tid, count in requests.items() if tid not in messages)
    return Audit(
        statuses=Counter(m.status for m in messages.values()),
        requests=requests,
        rejected=rejected,
        foreign=foreign if queryset is None else 0,
        messages=messages,
    )


def wait_for_callbacks(sim: Simulator, timeout: float = 30) -> list[dict[str, Any]]:
    """Wait until the simulator finished posting every accepted message's callbacks; returns
    the records whose lifecycle never finished (empty when all did)."""

    def pending() -> list[dict[str, Any]]:
        return [
            r
            for r in sim.messages(direction="outbound")
            if not any(s in r["settled"] for s in ("delivered", "undelivered", "failed", "read"))
        ]

    deadline = time.monotonic() + timeout
    while (left := pending()) and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(0.5)  # the last webhook's transaction commits
    return left


def explain_unreconciled(sim: Simulator, ids: list[str]) -> str:
    lines = []
    for pk in ids[:5]:
        for record in sim.messages(touchline_id=pk):
            lines.append(
                f"{pk}: simulator status {record['status']!r}, callbacks posted: "
                f"{[e.get('name') for e in record['events']] or 'none'}"
            )
    return "\n".join(lines)


def settled_by_callback(message_ids: list[str]) -> int:
    """Messages whose `sent` came from the provider's status callback, not from the worker
    (the worker was killed between the provider call and its commit, or was just slower)."""
    return (
        Touchpoint.objects.filter(message_id__in=message_ids, kind="sent")
        .exclude(data__has_key="attempt")
        .count()
    )


def random_pause(low: float, high: float) -> None:
    time.sleep(random.uniform(low, high))


class Background(threading.Thread):
    """A thread whose exception is re-raised by `join_checked`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # surfaced in join_checked
            self.error = exc
        finally:
            from django.db import connections

            connections.close_all()

    def join_checked(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout:.0f} s"
        if self.error is not None:
            raise self.error
