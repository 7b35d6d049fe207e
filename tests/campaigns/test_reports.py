"""Broadcast reports: per channel outcomes and engagement, reasons, activity per hour."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import BroadcastRecipient
from campaigns.reports import broadcast_activity, broadcast_report, broadcasts_overview
from messaging.models import ConsentChange, Message, Touchpoint
from tests.factories import ContactFactory

from .ui_helpers import NOW, broadcast, static_segment

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)


def _recipient(b, *, channel="sms", status=None, state="sent", reason="", sent_at=NOW):
    contact = ContactFactory()
    message = None
    if status is not None:
        message = Message.objects.create(
            direction="outbound",
            channel=channel,
            contact=contact,
            to_address=contact.phone,
            status=status,
            category="marketing",
            sent_at=sent_at if status != "failed" else None,
            delivered_at=sent_at + HOUR if status in ("delivered", "read") else None,
        )
        Message.objects.filter(pk=message.pk).update(created_at=sent_at)
        message.refresh_from_db()
    BroadcastRecipient.objects.create(
        broadcast=b,
        contact=contact,
        state=state,
        channel=channel,
        message=message,
        reason=reason,
        send_after=NOW,
        updated_at=NOW,
    )
    return contact, message


def _touch(message, kind, at, **data):
    Touchpoint.objects.create(
        contact=message.contact,
        channel=message.channel,
        direction="inbound",
        kind=kind,
        message=message if kind != "event" else None,
        occurred_at=at,
        data=data,
        dedupe_key=f"{kind}:{message.pk}:{at.isoformat()}",
    )


def _world():
    b = broadcast(
        [static_segment("all", [])],
        conversion_events=["order.completed"],
        conversion_window_hours=24,
    )
    _, delivered = _recipient(b, status="delivered")
    _, read = _recipient(b, status="read")
    _recipient(b, status="failed", state="sent")
    _, email = _recipient(b, channel="email", status="delivered")
    _recipient(b, state="held", reason="quiet hours in Asia/Tokyo")
    _recipient(b, channel="", state="skipped", reason="contact unsubscribed from sms")
    _touch(email, "opened", NOW + 2 * HOUR)
    _touch(email, "clicked", NOW + 2 * HOUR)
    Message.objects.create(
        direction="inbound",
        channel="sms",
        contact=delivered.contact,
        to_address="+15005550006",
        status="received",
        in_reply_to=delivered,
    )
    ConsentChange.objects.create(
        contact=read.contact,
        channel="sms",
        status="unsubscribed",
        previous_status="subscribed",
        source="keyword",
        changed_at=NOW + HOUR,
    )
    # an unsubscribe before the send does not count; an email one does not count for SMS
    ConsentChange.objects.create(
        contact=delivered.contact,
        channel="sms",
        status="unsubscribed",
        previous_status="subscribed",
        source="keyword",
        changed_at=NOW - HOUR,
    )
    _touch(delivered, "event", NOW + 3 * HOUR, name="order.completed")  # converts
    _touch(read, "event", NOW + 30 * HOUR, name="order.completed")  # too late
    _touch(email, "event", NOW + 3 * HOUR, name="cart.updated")  # another event
    return b


def test_per_channel_outcomes_engagement_and_conversions():
    b = _world()
    report = broadcast_report(broadcast=b)
    by_channel = {row["channel"]: row for row in report["channels"]}
    sms = by_channel["sms"]
    assert (sms["recipients"], sms["sent"], sms["delivered"], sms["failed"]) == (4, 2, 2, 1)
    assert (sms["opened"], sms["clicked"], sms["replied"]) == (1, 0, 1)  # read receipt = open
    assert (sms["unsubscribed"], sms["conversions"]) == (1, 1)
    email = by_channel["email"]
    assert (email["sent"], email["opened"], email["clicked"], email["conversions"]) == (1, 1, 1, 0)
    assert report["totals"]["recipients"] == 6
    assert report["totals"]["conversions"] == 1
    assert report["states"]["held"] == 1
    assert report["reasons"]["held"] == {"quiet hours in Asia/Tokyo": 1}
    assert report["reasons"]["skipped"] == {"contact unsubscribed from sms": 1}


def test_no_conversion_events_no_conversions():
    b = _world()
    b.conversion_events = []
    b.save()
    assert broadcast_report(broadcast=b)["totals"]["conversions"] == 0


def test_every_conversion_event_of_the_list_counts():
    b = _world()
    b.conversion_events = ["order.completed", "cart.updated"]
    b.save()
    report = broadcast_report(broadcast=b)
    by_channel = {row["channel"]: row for row in report["channels"]}
    assert (by_channel["sms"]["conversions"], by_channel["email"]["conversions"]) == (1, 1)
    assert report["conversion_events"] == ["order.completed", "cart.updated"]


def test_activity_per_hour_fills_the_gaps():
    b = _world()
    activity = broadcast_activity(broadcast=b)
    assert activity["hours"][0] == NOW.isoformat()
    assert len(activity["hours"]) == 3
    assert activity["series"]["sent"] == [3, 0, 0]
    assert activity["series"]["delivered"] == [0, 3, 0]
    assert activity["series"]["opened"] == [0, 0, 1]
    assert activity["series"]["clicked"] == [0, 0, 1]


def test_overview_and_fixed_query_counts():
    b = _world()
    overview = broadcasts_overview()
    assert overview[0]["slug"] == b.slug
    assert (overview[0]["recipients"], overview[0]["sent"], overview[0]["held"]) == (6, 3, 1)

    def measure() -> int:
        with CaptureQueriesContext(connection) as ctx:
            broadcast_report(broadcast=b)
            broadcast_activity(broadcast=b)
        return len(ctx.captured_queries)

    before = measure()
    for _ in range(5):
        _recipient(b, status="delivered")
    assert measure() == before


def test_the_admin_home_shows_the_broadcasts_overview(client):
    from django.contrib.auth.models import User

    b = _world()
    client.force_login(User.objects.create_superuser("root", "root@staff.example", "x"))
    html = client.get("/admin/").content.decode()
    assert 'id="broadcasts-overview"' in html
    assert b.name in html
    client.force_login(User.objects.create_user("nobody", is_staff=True))
    assert 'id="broadcasts-overview"' not in client.get("/admin/").content.decode()
