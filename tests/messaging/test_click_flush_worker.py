"""The click flush run by a real Celery worker on the real broker, as beat queues it."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import app as celery_app
from messaging import services
from messaging.links import link_token
from messaging.models import Message, Touchpoint, TrackedLink
from messaging.tasks import flush_clicks
from tests.factories import ContactFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_writes_buffered_clicks(client, settings):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the embedded default writes clicks directly)")
    message, _ = services.message_create(
        contact=ContactFactory(phone="+14155552671"), channel="sms", body="https://shop.example/a"
    )
    Message.objects.filter(pk=message.pk).update(sent_at=message.created_at - dt.timedelta(hours=1))
    token = link_token(TrackedLink.objects.get(message=message).pk)
    assert client.get(f"/l/{token}", HTTP_USER_AGENT="Mozilla/5.0").status_code == 302
    assert not Touchpoint.objects.filter(kind="clicked").exists()  # buffered
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ):
        flush_clicks.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Touchpoint.objects.filter(kind="clicked").exists():
                break
            time.sleep(0.1)
    [click] = Touchpoint.objects.filter(kind="clicked")
    assert click.message_id == message.pk
