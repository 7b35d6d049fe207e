"""Time limits every Celery task obeys, whatever the worker pool.

Celery enforces `soft_time_limit`/`time_limit` only in the prefork pool (by signals and by
killing the child); the threads pool, Touchline's production pool, ignores them. So limits are
enforced here, without killing threads:

- a deadline per task run, from its soft limit (task options, or the per-call override),
  started by `task_prerun` and checked cooperatively between phases: `check()` raises
  Celery's own `SoftTimeLimitExceeded` (a clean failure: nothing half-done is committed),
  `has_time()` lets a batch loop stop early and leave the rest to its next run;
- every blocking call has its own bound: outbound webhook requests an overall deadline
  (OUTBOUND_WEBHOOK_TIMEOUT_SECONDS for connect, TLS, request, answer and excerpt together,
  enforced by shutting the socket down: outbound.egress), database statements and lock waits
  `statement_timeout` (TASK_STATEMENT_TIMEOUT_SECONDS, set on every PostgreSQL connection a
  task opens), the sender rate-limit sleep SENDER_RATE_MAX_WAIT_SECONDS.

A phase only starts when its worst case fits before the soft limit, so the hard limit holds
for every phase whose bound is a deadline. It does NOT hold for the provider SDK calls
(Twilio, SendGrid through `requests`): PROVIDER_TIMEOUT_SECONDS is requests' connect/read
timeout, and the read timeout applies to each socket read, so a server that trickles its
answer a byte at a time can hold the call (and, in the threads pool, its thread) longer.
Those calls go only to the configured provider API hosts, not to user-supplied addresses;
a run that overran its hard limit is logged by `task_finished`. In the prefork pool Celery's
own limits still apply on top.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

logger = logging.getLogger(__name__)
_local = threading.local()


def _stack() -> list[tuple[float, str, float]]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def limits_of(task: Any) -> tuple[float | None, float | None]:
    """(soft, hard) seconds for this run of `task`: a per-call override (apply_async's
    soft_time_limit/time_limit), else the task's options, else the app's defaults."""
    request = getattr(task, "request", None)
    hard, soft = (getattr(request, "timelimit", None) or (None, None))[:2]
    conf = task.app.conf
    hard = hard or task.time_limit or conf.task_time_limit
    soft = soft or task.soft_time_limit or conf.task_soft_time_limit
    return (float(soft) if soft else None), (float(hard) if hard else None)


def task_started(task: Any) -> None:
    """`task_prerun`: start this run's deadline (the soft limit, else the hard one)."""
    soft, hard = limits_of(task)
    now = time.monotonic()
    limit = soft or hard
    expires = now + limit if limit else float("inf")
    _stack().append((expires, getattr(task, "name", ""), now + hard if hard else float("inf")))


def task_finished() -> None:
    """`task_postrun`: the run is over (eager tasks nest, hence a stack)."""
    stack = _stack()
    if stack:
        _, name, hard_deadline = stack.pop()
        overrun = time.monotonic() - hard_deadline
        if overrun > 0:
            # A pool that cannot kill (threads) finished it late: some call was unbounded.
            logger.error("Task %s ran %.1f s past its hard time limit", name, overrun)


def in_task() -> bool:
    return bool(_stack())


def remaining() -> float | None:
    """Seconds left before the current task's soft limit; None outside a task."""
    stack = _stack()
    if not stack:
        return None
    return min(entry[0] for entry in stack) - time.monotonic()


def has_time(need: float = 0.0) -> bool:
    """True when `need` more seconds fit before the soft limit (always outside a task)."""
    left = remaining()
    return left is None or left > need


def check(need: float = 0.0, *, phase: str = "") -> None:
    """Raise SoftTimeLimitExceeded unless `need` more seconds fit before the soft limit: call
    it before a phase whose worst case is `need`, never in the middle of one."""
    if not has_time(need):
        name = _stack()[-1][1]
        what = f" before {phase}" if phase else ""
        raise SoftTimeLimitExceeded(f"{name}: soft time limit reached{what}")


def statement_timeout_ms() -> int:
    from django.conf import settings

    return int(float(settings.TASK_STATEMENT_TIMEOUT_SECONDS) * 1000)


def on_connection_created(sender: Any, connection: Any, **_: Any) -> None:
    """Bound every statement (and lock wait) of a connection opened by a task: in the threads
    pool a stuck query could otherwise hold its thread forever."""
    if connection.vendor != "postgresql" or not in_task():
        return
    timeout = statement_timeout_ms()
    if timeout > 0:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{timeout}ms"])
