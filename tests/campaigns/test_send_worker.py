"""A broadcast sent end to end by a real Celery worker on the real broker: the dispatch task
claims, the send tasks create the messages, the deliver task sends them with the real twilio
and sendgrid SDKs to the simulator."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker

from campaigns import services
from campaigns.models import Broadcast
from campaigns.tasks import dispatch_due
from config.celery import app as celery_app
from messaging.models import Message

from .broadcast_fixtures import (
    draft,
    marketer,
    messages_per_contact,
    people,
    states,
    static_segment,
    templates,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff(db):
    return marketer()


def test_a_real_worker_sends_a_small_broadcast_through_the_simulator(staff, simulator):
    templates()
    contacts = people(6)
    for contact in contacts[:2]:
        contact.preferred_channel = "email"
        contact.save()
    broadcast = services.broadcast_launch(
        broadcast=draft(
            [static_segment(contacts)],
            channel_order=["preferred", "sms", "email"],
            category="transactional",  # no quiet hours: the wall clock decides nothing here
        ),
        actor=staff,
    )
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ):
        dispatch_due.delay()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Message.objects.filter(status="sent").count() == 6:
                break
            time.sleep(0.1)
        # the next tick completes it
        dispatch_due.delay()
        while time.monotonic() < deadline:
            broadcast.refresh_from_db()
            if broadcast.status == Broadcast.Status.COMPLETED:
                break
            time.sleep(0.1)

    assert set(states(broadcast).values()) == {"sent"}
    assert messages_per_contact(broadcast) == {f"p-{i}": 1 for i in range(6)}
    assert broadcast.status == Broadcast.Status.COMPLETED
    sms = simulator.messages(channel="sms", direction="outbound")
    email = simulator.messages(channel="email", direction="outbound")
    assert sorted(m["to"] for m in sms) == sorted(c.phone for c in contacts[2:])
    assert sorted(m["to"] for m in email) == sorted(c.email for c in contacts[:2])
    assert {m["body"] for m in sms} == {"Hi Ada, our sale starts now!"}
    for message in Message.objects.all():
        assert message.provider_message_id
        assert simulator.messages(touchline_id=str(message.pk))
