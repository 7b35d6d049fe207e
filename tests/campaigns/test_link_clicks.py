"""A tracked link's click counts in the broadcast report; a scanner's does not."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import BroadcastRecipient
from campaigns.reports import broadcast_report
from messaging import services
from messaging.click_buffer import clicks_flush
from messaging.links import link_token
from messaging.models import Message, TrackedLink
from tests.factories import ContactFactory

from .ui_helpers import NOW, broadcast, static_segment

pytestmark = pytest.mark.django_db


def test_tracked_click_counts_once_in_the_broadcast_report(client):
    people = [ContactFactory(phone=f"+1415555267{i}") for i in range(2)]
    b = broadcast([static_segment("fans", people)])
    tokens = []
    for contact in people:
        message, _ = services.message_create(
            contact=contact,
            channel="sms",
            body="Sale: https://shop.example/sale",
            category="marketing",
            metadata={"broadcast": b.slug, "broadcast_id": b.pk},
        )
        Message.objects.filter(pk=message.pk).update(
            status="sent", sent_at=NOW - dt.timedelta(hours=1)
        )
        BroadcastRecipient.objects.create(
            broadcast=b,
            contact=contact,
            state="sent",
            channel="sms",
            message=message,
            send_after=NOW,
            updated_at=NOW,
        )
        tokens.append(link_token(TrackedLink.objects.get(message=message).pk))
    person, scanner = tokens
    response = client.get(f"/l/{person}", HTTP_USER_AGENT="Mozilla/5.0")
    assert "utm_campaign=black-friday" in response["Location"]
    client.get(f"/l/{person}", HTTP_USER_AGENT="Mozilla/5.0")
    client.get(f"/l/{scanner}", HTTP_USER_AGENT="facebookexternalhit/1.1")
    clicks_flush()  # beat's job every CLICK_FLUSH_SECONDS when clicks are buffered in Redis
    assert broadcast_report(broadcast=b)["totals"]["clicked"] == 1
