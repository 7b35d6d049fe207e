"""The Celery app and its beat schedule. No business logic here."""

import logging
import os
import re

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("touchline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _beat_schedule(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = {
        "sweep-stale-messages": {
            "task": "messaging.tasks.sweep_messages",
            "schedule": settings.SWEEP_INTERVAL_SECONDS,
        },
        "reconcile-unknown-messages": {
            "task": "messaging.reconcile_unknown",
            "schedule": settings.SWEEP_INTERVAL_SECONDS,
        },
        "sweep-unprocessed-events": {
            "task": "journeys.sweep_events",
            "schedule": settings.SWEEP_INTERVAL_SECONDS,
        },
        "advance-due-enrollments": {
            "task": "journeys.schedule_due",
            "schedule": settings.SCHEDULER_INTERVAL_SECONDS,
        },
        "dispatch-broadcasts": {
            "task": "campaigns.dispatch_due",
            "schedule": settings.BROADCAST_DISPATCH_INTERVAL_SECONDS,
        },
        "choose-broadcast-winners": {
            "task": "campaigns.choose_winners",
            "schedule": settings.BROADCAST_WINNER_INTERVAL_SECONDS,
        },
        "recompute-segments": {
            "task": "audiences.recompute_segments",
            "schedule": settings.SEGMENT_RECOMPUTE_INTERVAL_SECONDS,
        },
        "apply-changed-contacts-to-segments": {
            "task": "audiences.apply_changed_contacts",
            "schedule": settings.SEGMENT_LIVE_INTERVAL_SECONDS,
        },
        "resume-stalled-imports": {
            "task": "audiences.resume_stalled_imports",
            "schedule": settings.SEGMENT_RECOMPUTE_INTERVAL_SECONDS,
        },
        "flush-link-clicks": {
            "task": "messaging.flush_clicks",
            "schedule": settings.CLICK_FLUSH_SECONDS,
        },
        "dispatch-due-webhooks": {
            "task": "outbound.dispatch_due_webhooks",
            "schedule": settings.OUTBOUND_WEBHOOK_DISPATCH_INTERVAL_SECONDS,
        },
    }


def _wake(*_: object) -> None:
    return None


@signals.worker_ready.connect(dispatch_uid="touchline.bounded_event_loop_sleep")
def _bound_event_loop_sleep(sender: object = None, **_: object) -> None:
    """Threads pool only: a pool thread that finishes an acks_late task queues its ack with
    `hub.call_soon`, which does not wake the worker's event loop. With a prefetch multiplier
    of 1 the worker then holds `concurrency` unacked tasks, stops reading the queue, and sleeps
    in epoll until its next timer, 1-2 s later (celery/celery#6941): sends went out in bursts
    of 8 every ~2 s (bench/send_throughput.py: 4.6 msg/s). A 10 ms no-op timer bounds that
    sleep."""
    from celery.concurrency.thread import TaskPool

    timer = getattr(sender, "timer", None)
    if isinstance(getattr(sender, "pool", None), TaskPool) and timer is not None:
        timer.call_repeatedly(0.01, _wake)


class QuietHousekeeping(logging.Filter):
    """Drops the log lines of periodic housekeeping tasks that found nothing to do (beat's
    "Sending due task", the worker's "received" and a "succeeded" whose result has no
    non-zero number), so an idle Touchline prints nothing every 2 s. Work done, errors and
    every other task still log as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A logging filter must never raise: an exception here would kill beat or the worker
        # (a beat error line once carried a list where this expected a task name).
        try:
            return not self._idle_housekeeping(record)
        except Exception:
            return True

    @staticmethod
    def _idle_housekeeping(record: logging.LogRecord) -> bool:
        args = record.args
        if str(record.msg).startswith("Scheduler: Sending due task"):
            return isinstance(args, tuple) and len(args) == 2 and args[1] in housekeeping_tasks()
        if not isinstance(args, dict) or args.get("name") not in housekeeping_tasks():
            return False
        if "return_value" in args:  # a success line: idle when no non-zero number came back
            return not re.search(r"[1-9]", str(args["return_value"]))
        return "runtime" not in args and "exc" not in args  # a "received" line


def housekeeping_tasks() -> set[str]:
    return {entry["task"] for entry in (app.conf.beat_schedule or {}).values()}


_quiet = QuietHousekeeping()
for _name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_name).addFilter(_quiet)


@signals.task_prerun.connect(dispatch_uid="touchline.task_deadline_start")
def _task_deadline_start(sender: object = None, task: object = None, **_: object) -> None:
    from . import task_limits

    task_limits.task_started(task or sender)


@signals.task_postrun.connect(dispatch_uid="touchline.task_deadline_end")
def _task_deadline_end(**_: object) -> None:
    from . import task_limits

    task_limits.task_finished()


def _connect_statement_timeout() -> None:
    from django.db.backends.signals import connection_created

    from . import task_limits

    connection_created.connect(
        task_limits.on_connection_created, dispatch_uid="touchline.task_statement_timeout"
    )


_connect_statement_timeout()
