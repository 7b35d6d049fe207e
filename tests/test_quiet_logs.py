"""An idle Touchline prints nothing every 2 s: the housekeeping tasks' routine lines are
dropped, everything else (work done, failures, other tasks) still logs."""

from __future__ import annotations

import logging

import pytest

from config.celery import app, housekeeping_tasks


@pytest.fixture
def logs(caplog):
    app.finalize(auto=True)
    caplog.set_level(logging.INFO)
    return caplog


def trace(name: str, **context) -> None:
    logging.getLogger("celery.app.trace").info("Task %(name)s", {"name": name, **context})


def test_the_beat_schedule_is_what_counts_as_housekeeping():
    app.finalize(auto=True)
    assert {"journeys.schedule_due", "messaging.tasks.sweep_messages"} <= housekeeping_tasks()
    assert "messaging.tasks.deliver_message" not in housekeeping_tasks()


def test_idle_housekeeping_prints_nothing(logs):
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "advance-due-enrollments", "journeys.schedule_due"
    )
    logging.getLogger("celery.worker.strategy").info(
        "Task %(name)s[%(id)s] received",
        {"name": "journeys.schedule_due", "id": "1", "args": "()", "kwargs": "{}", "eta": None},
    )
    trace("journeys.schedule_due", id="1", return_value="0", runtime=0.01)
    trace(
        "messaging.tasks.sweep_messages",
        id="2",
        return_value="{'requeued': 0, 'unknown': 0}",
        runtime=0.01,
    )
    assert logs.records == []


def test_work_done_failures_and_other_tasks_still_log(logs):
    trace("journeys.schedule_due", id="1", return_value="12", runtime=0.01)
    trace("messaging.tasks.sweep_messages", id="2", return_value="{'requeued': 3}", runtime=0.1)
    trace("journeys.schedule_due", id="3", exc="OperationalError('down')", runtime=0.01)
    trace("messaging.tasks.deliver_message", id="4", return_value="None", runtime=0.2)
    logging.getLogger("celery.worker.strategy").info(
        "Task %(name)s[%(id)s] received",
        {"name": "messaging.tasks.deliver_message", "id": "4", "args": "()", "kwargs": "{}"},
    )
    assert len(logs.records) == 5


def test_the_filter_never_raises_whatever_a_record_carries(logs):
    # Beat once logged an error whose arguments held a list: the filter raised TypeError and
    # beat died (tests/faults/test_broker_restart.py caught it).
    beat = logging.getLogger("celery.beat")
    beat.error("beat raised %s: %s", ["unhashable"], {"x": 1})
    beat.info("Scheduler: Sending due task %s (%s)", "x", ["not", "a", "name"])
    logging.getLogger("celery.app.trace").info("odd %(name)s", {"name": ["a", "list"]})
    assert len(logs.records) == 3
