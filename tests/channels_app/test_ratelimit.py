"""The per-sender rate limit: evenly spaced slots shared by all workers (Redis in CI)."""

from __future__ import annotations

import threading
import uuid
from itertools import pairwise

import pytest

from channels_app import ratelimit
from messaging import services
from tests.factories import ContactFactory


@pytest.fixture
def limits(settings):
    settings.SENDER_RATE_LIMITS = {"sms": 10.0, "whatsapp": 80.0, "email": 0.0}
    settings.SENDER_RATE_MAX_WAIT_SECONDS = 2.0
    return settings


def test_slots_are_spaced_by_the_rate_across_threads(limits):
    sender = f"+1415{uuid.uuid4().int % 10**7:07d}"
    slots: list[ratelimit.Reservation] = []
    lock = threading.Lock()

    def take():
        slot = ratelimit.reserve_send_slot(channel="sms", sender=sender)
        with lock:
            slots.append(slot)

    threads = [threading.Thread(target=take) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(slot.granted for slot in slots)
    # 10/s: the reserved slots are exactly 100 ms apart, whichever thread took which
    times = sorted(slot.at for slot in slots)
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert gaps == pytest.approx([0.1] * 11, abs=1e-5)


def test_a_far_slot_is_refused_without_being_taken(limits):
    sender = f"far-{uuid.uuid4().hex}"
    granted = [ratelimit.reserve_send_slot(channel="sms", sender=sender) for _ in range(21)]
    assert all(g.granted for g in granted[:20])  # slots 0 … 1.9 s ahead
    refused = ratelimit.reserve_send_slot(channel="sms", sender=sender, max_wait=0.5)
    assert not refused.granted and refused.wait > 0.5
    again = ratelimit.reserve_send_slot(channel="sms", sender=sender, max_wait=0.5)
    # a refusal reserves nothing: the next free slot is still the same one
    assert not again.granted and again.at == refused.at


def test_senders_do_not_share_a_bucket(limits):
    a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    ratelimit.reserve_send_slot(channel="sms", sender=a)
    assert ratelimit.reserve_send_slot(channel="sms", sender=b).wait == 0


def test_unlimited_channel(limits):
    assert ratelimit.reserve_send_slot(channel="email", sender="x") == ratelimit.Reservation(
        True, 0.0
    )


def test_the_in_process_bucket_without_redis(limits):
    limits.REDIS_URL = ""
    sender = f"local-{uuid.uuid4().hex}"
    slots = [ratelimit.reserve_send_slot(channel="sms", sender=sender) for _ in range(3)]
    assert [b.at - a.at for a, b in pairwise(slots)] == pytest.approx([0.1, 0.1], abs=1e-9)


@pytest.mark.django_db
def test_delivery_hands_back_a_message_whose_slot_is_far(limits, simulator):
    limits.SENDER_RATE_LIMITS = {"sms": 1.0, "whatsapp": 80.0, "email": 0.0}
    limits.SENDER_RATE_MAX_WAIT_SECONDS = 0.0
    limits.TWILIO_SMS_FROM = f"+1500555{uuid.uuid4().int % 10**4:04d}"  # a fresh bucket
    contact = ContactFactory()
    first, _ = services.message_create(contact=contact, channel="sms", body="one")
    second, _ = services.message_create(contact=contact, channel="sms", body="two")
    assert services.message_deliver(message_id=first.pk).result == "sent"
    outcome = services.message_deliver(message_id=second.pk)
    assert outcome.result == "rate_limited" and 0 < outcome.retry_in <= 1.0
    second.refresh_from_db()
    assert second.status == "queued" and second.attempts == 0
    assert [m["body"] for m in simulator.messages()] == ["one"]
