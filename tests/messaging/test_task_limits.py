"""Task time limits hold in the threads pool too (Celery enforces them only in prefork): a
cooperative deadline from the task's soft limit, checked before each phase, and a statement
timeout on every database connection a task opens. Run on a real threads-pool worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from config import task_limits
from config.celery import app as celery_app
from messaging.models import Message, Touchpoint
from messaging.status import MessageStatus
from messaging.tasks import deliver_message
from tests.factories import ContactFactory

OUR_APPS = ("messaging.", "journeys.", "outbound.", "audiences.", "campaigns.")


class Outcomes:
    """What the worker's tasks ended with (task_failure, task_retry, task_postrun)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, BaseException | None]] = []
        self.cond = threading.Condition()

    def record(self, kind: str, task_id: str, exc: BaseException | None = None) -> None:
        with self.cond:
            self.events.append((kind, task_id, exc))
            self.cond.notify_all()

    def wait(self, task_id: str, kinds: set[str], timeout: float = 30.0):
        with self.cond:
            found = self.cond.wait_for(
                lambda: [e for e in self.events if e[1] == task_id and e[0] in kinds],
                timeout=timeout,
            )
        assert found, f"task {task_id} did not end in {kinds}; saw {self.events}"
        return found[0]


@pytest.fixture
def outcomes() -> Iterator[Outcomes]:
    seen = Outcomes()

    def failed(sender=None, task_id=None, exception=None, **_):
        seen.record("failure", task_id, exception)

    def retried(sender=None, request=None, reason=None, **_):
        seen.record("retry", request.id, reason if isinstance(reason, BaseException) else None)

    def ran(task_id=None, state=None, **_):
        if state == "SUCCESS":
            seen.record("success", task_id)

    signals.task_failure.connect(failed, weak=False, dispatch_uid="test-limits-failure")
    signals.task_retry.connect(retried, weak=False, dispatch_uid="test-limits-retry")
    signals.task_postrun.connect(ran, weak=False, dispatch_uid="test-limits-success")
    yield seen
    signals.task_failure.disconnect(dispatch_uid="test-limits-failure")
    signals.task_retry.disconnect(dispatch_uid="test-limits-retry")
    signals.task_postrun.disconnect(dispatch_uid="test-limits-success")


@pytest.fixture
def threads_worker(simulator):
    """A real Celery worker with the threads pool (the production pool), on the real broker."""
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


def queued_message() -> Message:
    contact = ContactFactory()
    return Message.objects.create(
        direction="outbound",
        channel="sms",
        contact=contact,
        to_address=contact.phone,
        body="Your order shipped",
        status=MessageStatus.QUEUED,
        queued_at=timezone.now(),
        next_attempt_at=timezone.now(),
    )


def test_every_task_declares_a_soft_limit_below_its_hard_limit():
    celery_app.loader.import_default_modules()  # every app's tasks module, as a worker does
    ours = [t for name, t in celery_app.tasks.items() if name.startswith(OUR_APPS)]
    assert len(ours) >= 9
    assert {name.split(".")[0] for name in (t.name for t in ours)} == {
        app.rstrip(".") for app in OUR_APPS
    }
    for task in ours:
        soft, hard = task_limits.limits_of(task)
        assert soft and hard and soft < hard, (task.name, soft, hard)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_threads_pool_fails_cleanly_when_the_provider_call_cannot_fit_its_soft_limit(
    threads_worker, simulator, settings, outcomes
):
    """The provider call's worst case (connect + read timeouts) does not fit before the
    task's soft limit: the task fails with SoftTimeLimitExceeded before claiming the
    message, which stays `queued` for the sweeper, untouched, and is not sent."""
    settings.PROVIDER_TIMEOUT_SECONDS = 10  # worst case 25 s
    message = queued_message()

    result = deliver_message.apply_async((str(message.pk),), soft_time_limit=5, time_limit=8)

    kind, _, exc = outcomes.wait(result.id, {"failure", "success"})
    assert kind == "failure" and isinstance(exc, SoftTimeLimitExceeded), (kind, exc)
    message.refresh_from_db()
    assert (message.status, message.attempts, message.delivery_tries) == ("queued", 0, 0)
    assert not Touchpoint.objects.filter(message=message, kind="sending").exists()
    assert simulator.messages() == []

    # With room for the call, the same message goes.
    result = deliver_message.apply_async((str(message.pk),))
    assert outcomes.wait(result.id, {"failure", "success"})[0] == "success"
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert len(simulator.messages()) == 1


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement_timeout is PostgreSQL's")
def test_threads_pool_task_does_not_wait_on_a_lock_past_the_statement_timeout(
    threads_worker, simulator, settings, outcomes
):
    """A row lock held elsewhere (a stuck transaction) would hold a pool thread forever: the
    statement timeout on the task's connection cancels the wait, and the task retries later
    (a database error before the claim), having changed nothing."""
    settings.TASK_STATEMENT_TIMEOUT_SECONDS = 0.5
    message = queued_message()
    params = connection.get_connection_params()
    conninfo = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )
    with psycopg.connect(conninfo) as other:
        other.execute("SELECT id FROM messaging_message WHERE id = %s FOR UPDATE", [message.pk])
        result = deliver_message.apply_async((str(message.pk),))
        kind, _, exc = outcomes.wait(result.id, {"retry", "failure", "success"})
        assert kind == "retry", (kind, exc)
        assert "statement timeout" in str(exc), exc
        message.refresh_from_db()
        assert (message.status, message.delivery_tries) == (MessageStatus.QUEUED, 0)
        other.rollback()
    # Nothing was claimed or sent while the lock was held; the retry (a Celery countdown)
    # finds the row free later.
    assert not Touchpoint.objects.filter(message=message, kind="sending").exists()


def test_a_provider_timeout_no_send_could_fit_is_a_system_check_error(settings):
    from messaging.checks import provider_call_fits_the_delivery_soft_limit

    assert provider_call_fits_the_delivery_soft_limit() == []
    settings.PROVIDER_TIMEOUT_SECONDS = 60
    [error] = provider_call_fits_the_delivery_soft_limit()
    assert error.id == "messaging.E001"
