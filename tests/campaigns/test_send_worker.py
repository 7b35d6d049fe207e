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


def _wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def test_a_real_worker_sends_the_test_group_then_the_winner_to_the_rest(staff, simulator):
    from django.utils import timezone

    from campaigns.models import BroadcastRecipient
    from campaigns.tasks import choose_winners
    from tests.factories import TemplateFactory

    templates()
    TemplateFactory(slug="promo-b", channel="sms", body="B for {{ contact.first_name }}")
    contacts = people(30)
    broadcast = services.broadcast_launch(
        broadcast=draft(
            [static_segment(contacts)],
            channel_order=["sms"],
            category="transactional",
            variants=[
                {"template_slug": "promo", "weight": 50},
                {"template_slug": "promo-b", "weight": 50},
            ],
            variant_test_percent=40,
            winner_after_hours=1,
            winner_metric="delivered",
            holdout_percent=10,
        ),
        actor=staff,
    )
    rows = BroadcastRecipient.objects.filter(broadcast=broadcast)
    test_group = set(rows.exclude(variant="").values_list("contact_id", flat=True))
    tested = len(test_group)
    control = rows.filter(state="control").count()
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ):
        dispatch_due.delay()
        _wait_for(lambda: Message.objects.filter(status="sent").count() == tested)
        assert Message.objects.count() == tested  # the rest waits for the winner
        Broadcast.objects.filter(pk=broadcast.pk).update(winner_due_at=timezone.now())
        choose_winners.delay()
        choose_winners.delay()  # a duplicate run releases nothing twice
        _wait_for(lambda: not rows.filter(state="awaiting_winner").exists())
        dispatch_due.delay()
        _wait_for(lambda: Message.objects.filter(status="sent").count() == 30 - control)
        dispatch_due.delay()
        _wait_for(
            lambda: Broadcast.objects.get(pk=broadcast.pk).status == Broadcast.Status.COMPLETED
        )

    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.COMPLETED and broadcast.winner_variant
    sent = messages_per_contact(broadcast)
    assert len(sent) == 30 - control and set(sent.values()) == {1}
    assert not Message.objects.filter(
        contact_id__in=rows.filter(state="control").values("contact_id")
    ).exists()
    rest = Message.objects.exclude(contact_id__in=test_group)
    assert rest.count() == 30 - control - tested > 0
    assert set(rest.values_list("template__slug", flat=True)) == {broadcast.winner_variant}
