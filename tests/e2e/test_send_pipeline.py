"""End to end with real parts: HTTP API → Celery worker (real broker) → twilio/sendgrid SDKs →
simulator → signed status callbacks → webhooks → `delivered` on the timeline."""

from __future__ import annotations

import time

import pytest
import requests
from celery.contrib.testing.worker import start_worker

from channels_app.simulator import start_simulator
from config.celery import app as celery_app
from messaging.models import Message, Touchpoint
from tests.conftest import _simulator_config
from tests.factories import TemplateFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_stack(live_server, settings, api_key):
    """A live web server, a simulator calling it back, and a real Celery worker."""
    settings.PUBLIC_BASE_URL = live_server.url
    sim = start_simulator(_simulator_config(live_server.url, callbacks=True), port=0)
    settings.TWILIO_API_BASE_URL = sim.url
    settings.SENDGRID_API_HOST = sim.url
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ):
        yield live_server.url, sim, api_key
    sim.stop()


def wait_for_status(message_id: str, status: str, timeout: float = 30.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message = Message.objects.get(pk=message_id)
        if message.status == status or time.monotonic() > deadline:
            return message
        time.sleep(0.1)


def whatsapp_template():
    TemplateFactory(
        slug="thanks-wa",
        channel="whatsapp",
        body="Thanks on WhatsApp, {{ contact.first_name }}!",
        content_sid="HX" + "1" * 32,
        content_variables={"1": "{{ contact.first_name }}"},
    )


def test_api_send_on_every_channel_reaches_delivered(live_stack):
    base, sim, key = live_stack
    whatsapp_template()
    headers = {"Authorization": f"Api-Key {key}"}
    contact = {
        "external_id": "e2e-1",
        "first_name": "Ada",
        "phone": "+14155552671",
        "whatsapp": "+14155552672",
        "email": "ada@example.com",
    }
    ids = {}
    for channel, extra in (
        ("sms", {"body": "Thanks {{ contact.first_name }}!"}),
        # Outside the 24-hour window WhatsApp takes an approved template (content SID).
        ("whatsapp", {"template": "thanks-wa"}),
        ("email", {"subject": "Thank you", "body": "Thanks by email, {{ contact.first_name }}."}),
    ):
        response = requests.post(
            f"{base}/api/v1/messages/",
            json={"contact": contact, "channel": channel, **extra},
            headers={**headers, "Idempotency-Key": f"e2e-{channel}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        ids[channel] = response.json()["id"]

    for channel, message_id in ids.items():
        message = wait_for_status(message_id, "delivered")
        assert message.status == "delivered", (channel, message.status, message.error_message)
        received = sim.messages(touchline_id=message_id)
        assert len(received) == 1, (channel, received)
        assert message.provider_message_id == received[0]["id"]
        kinds = set(Touchpoint.objects.filter(message_id=message_id).values_list("kind", flat=True))
        assert {"queued", "sending", "sent", "delivered"} <= kinds, (channel, kinds)

    assert len(sim.messages(direction="outbound")) == 3
    assert [m["body"] for m in sim.messages(channel="sms")] == ["Thanks Ada!"]
    timeline = requests.get(
        f"{base}/api/v1/contacts/e2e-1/touchpoints/", headers=headers, timeout=10
    ).json()
    assert {t["kind"] for t in timeline["results"]} >= {"queued", "sent", "delivered"}


def test_replies_and_stop_start_through_signed_webhooks(live_stack):
    """A customer answers on each channel from the simulator (signed inbound webhooks)."""
    base, sim, key = live_stack
    whatsapp_template()
    headers = {"Authorization": f"Api-Key {key}"}
    contact = {
        "external_id": "e2e-2",
        "phone": "+14155552681",
        "whatsapp": "+14155552682",
        "email": "bo@example.com",
    }
    sent = {}
    for channel in ("sms", "whatsapp", "email"):
        content = (
            {"template": "thanks-wa"}
            if channel == "whatsapp"
            else {"subject": "Hi", "body": "How was it?"}
        )
        response = requests.post(
            f"{base}/api/v1/messages/",
            json={"contact": contact, "channel": channel, **content},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 202, response.text
        sent[channel] = response.json()["id"]
        assert wait_for_status(sent[channel], "delivered").status == "delivered"

    for channel, customer in (
        ("sms", "+14155552681"),
        ("whatsapp", "+14155552682"),
        ("email", "bo@example.com"),
    ):
        answer = sim.reply(channel, customer, "Thanks!")
        assert answer.status_code == 200, answer.text
        reply = Message.objects.get(direction="inbound", channel=channel)
        assert reply.in_reply_to_id is not None and str(reply.in_reply_to_id) == sent[channel]
        assert reply.body.strip() == "Thanks!"  # quoted history stripped from the email
        tp = Touchpoint.objects.get(kind="replied", channel=channel)
        assert str(tp.message_id) == sent[channel]

    assert sim.reply("sms", "+14155552681", "STOP").status_code == 200
    blocked = requests.post(
        f"{base}/api/v1/messages/",
        json={"contact": {"external_id": "e2e-2"}, "channel": "sms", "body": "Sale!"},
        headers=headers,
        timeout=10,
    ).json()
    assert blocked["status"] == "skipped"
    assert sim.reply("sms", "+14155552681", "start").status_code == 200
    again = requests.post(
        f"{base}/api/v1/messages/",
        json={"contact": {"external_id": "e2e-2"}, "channel": "sms", "body": "Welcome back"},
        headers=headers,
        timeout=10,
    ).json()
    assert wait_for_status(again["id"], "delivered").status == "delivered"
    sources = list(
        Touchpoint.objects.filter(kind="consent_changed")
        .order_by("id")
        .values_list("data__status", "data__source")
    )
    assert sources == [("unsubscribed", "keyword"), ("subscribed", "keyword")]
    assert sim.messages(to="+14155552681", direction="outbound")[-1]["body"] == "Welcome back"
    assert [m["body"] for m in sim.messages(to="+14155552681", direction="outbound")] == [
        "How was it?",
        "Welcome back",
    ]
