"""The dry run: per channel, how many would be sent, held or skipped and why; set-based."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.dryrun import broadcast_dry_run, channel_order_for
from tests.factories import ConsentFactory, ContactFactory

from .ui_helpers import NOW, broadcast, recent_marketing, sms_subscriber, static_segment, templates

pytestmark = pytest.mark.django_db


def _channel(result, name):
    return next(row for row in result["channels"] if row["channel"] == name)


def test_every_outcome_is_counted_with_its_reason(settings):
    settings.FREQUENCY_CAP_MESSAGES = 2
    templates()
    sent_sms = sms_subscriber()
    email_only = ContactFactory()  # no SMS subscription: falls back to email
    unsubscribed = ContactFactory()
    ConsentFactory(contact=unsubscribed, channel="sms", status="unsubscribed")
    ConsentFactory(contact=unsubscribed, channel="email", status="unsubscribed")
    bounced = ContactFactory(phone="", email_undeliverable=True)
    quiet = sms_subscriber(timezone="Asia/Tokyo")  # 21:00 there
    capped = sms_subscriber()
    recent_marketing(capped, 2, at=NOW)
    excluded = sms_subscriber()
    erased = sms_subscriber(erased_at=NOW)
    everyone = [sent_sms, email_only, unsubscribed, bounced, quiet, capped, excluded, erased]
    b = broadcast([static_segment("all", everyone)], exclude=[static_segment("no", [excluded])])

    result = broadcast_dry_run(broadcast=b, now=NOW)

    assert result["audience"] == 6
    assert (result["sent"], result["held"], result["skipped"]) == (2, 2, 2)
    assert result["skipped_reasons"] == {"unsubscribed": 1, "undeliverable": 1}
    sms, email = _channel(result, "sms"), _channel(result, "email")
    assert sms["sent"] == 1
    assert sms["held_reasons"] == {"quiet_hours": 1, "frequency_cap": 1}
    assert sms["skipped_reasons"] == {"no_consent": 1, "unsubscribed": 1, "no_address": 1}
    assert sms["reachable"] == 3
    assert email["sent"] == 1
    assert email["skipped_reasons"] == {"unsubscribed": 1, "undeliverable": 1}
    assert email["reachable"] == 4  # unknown email consent may receive marketing


def test_transactional_ignores_quiet_hours_cap_and_needs_no_subscription(settings):
    settings.FREQUENCY_CAP_MESSAGES = 1
    templates()
    quiet = sms_subscriber(timezone="Asia/Tokyo")
    recent_marketing(quiet, 1, at=NOW)
    unknown = ContactFactory()
    b = broadcast([static_segment("all", [quiet, unknown])], category="transactional")
    result = broadcast_dry_run(broadcast=b, now=NOW)
    assert (result["sent"], result["held"], result["skipped"]) == (2, 0, 0)
    assert _channel(result, "sms")["sent"] == 2


def test_frequency_cap_skip_falls_back_to_the_next_channel(settings):
    settings.FREQUENCY_CAP_MESSAGES = 1
    templates()
    capped = sms_subscriber()
    recent_marketing(capped, 1, at=NOW)
    b = broadcast([static_segment("all", [capped])], frequency_cap_action="skip")
    result = broadcast_dry_run(broadcast=b, now=NOW)
    assert _channel(result, "sms")["skipped_reasons"] == {"frequency_cap": 1}
    # the email is capped too (the cap counts marketing on every channel)
    assert result["skipped_reasons"] == {"frequency_cap": 1}


def test_no_template_for_a_channel_and_whatsapp_window():
    templates(channels=("whatsapp", "email"))
    inside = ContactFactory(whatsapp="+14155550900", last_inbound_whatsapp_at=NOW)
    outside = ContactFactory(whatsapp="+14155550901", last_inbound_whatsapp_at=None)
    for c in (inside, outside):
        ConsentFactory(contact=c, channel="whatsapp")
    b = broadcast(
        [static_segment("all", [inside, outside])],
        channel_order=["whatsapp", "sms", "email"],
        category="transactional",
    )
    result = broadcast_dry_run(broadcast=b, now=NOW)
    assert _channel(result, "whatsapp")["sent"] == 1
    assert _channel(result, "whatsapp")["skipped_reasons"] == {"whatsapp_window": 1}
    assert _channel(result, "sms")["skipped_reasons"] == {"no_template": 1}
    assert _channel(result, "email")["sent"] == 1


def test_whatsapp_content_sid_sends_outside_the_window():
    templates(channels=("whatsapp",), whatsapp_sid="HX123")
    outside = ContactFactory(whatsapp="+14155550901")
    ConsentFactory(contact=outside, channel="whatsapp")
    b = broadcast(
        [static_segment("all", [outside])], channel_order=["whatsapp"], category="transactional"
    )
    assert _channel(broadcast_dry_run(broadcast=b, now=NOW), "whatsapp")["sent"] == 1


def test_local_time_mode_evaluates_quiet_hours_at_each_contacts_send_time():
    templates()
    london, tokyo = sms_subscriber(), sms_subscriber(timezone="Asia/Tokyo")
    seg = static_segment("all", [london, tokyo])
    evening = broadcast(
        [seg],
        send_mode="local",
        local_send_date=dt.date(2026, 11, 24),
        local_send_time=dt.time(22, 0),
    )
    result = broadcast_dry_run(broadcast=evening, now=NOW)
    assert _channel(result, "sms")["held_reasons"] == {"quiet_hours": 2}
    morning = broadcast(
        [seg],
        slug="morning",
        send_mode="local",
        local_send_date=dt.date(2026, 11, 24),
        local_send_time=dt.time(10, 0),
    )
    assert _channel(broadcast_dry_run(broadcast=morning, now=NOW), "sms")["sent"] == 2


def test_a_hold_past_the_end_of_send_window_is_a_skip():
    templates()
    tokyo = sms_subscriber(timezone="Asia/Tokyo")  # quiet until 08:00 Tokyo = 23:00 UTC
    b = broadcast([static_segment("all", [tokyo])], end_at=NOW + dt.timedelta(hours=2))
    result = broadcast_dry_run(broadcast=b, now=NOW)
    assert result["skipped_reasons"] == {"end_window": 1}


def test_preferred_channel_comes_first():
    assert channel_order_for(["preferred", "sms", "email"], "email") == ["email", "sms"]
    assert channel_order_for(["preferred", "sms", "email"], "") == ["sms", "email"]
    templates()
    c = sms_subscriber(preferred_channel="email")
    b = broadcast([static_segment("all", [c])], channel_order=["preferred", "sms", "email"])
    result = broadcast_dry_run(broadcast=b, now=NOW)
    assert _channel(result, "email")["sent"] == 1
    assert _channel(result, "sms")["sent"] == 0


def test_the_query_count_does_not_depend_on_the_audience(settings):
    settings.FREQUENCY_CAP_MESSAGES = 2
    templates()

    def measure(n: int, slug: str) -> int:
        contacts = [sms_subscriber(timezone=tz) for tz in ["UTC", "Asia/Tokyo"] * n]
        b = broadcast([static_segment(slug, contacts)], slug=slug)
        with CaptureQueriesContext(connection) as ctx:
            result = broadcast_dry_run(broadcast=b, now=NOW)
        assert result["audience"] == 2 * n
        return len(ctx.captured_queries)

    assert measure(2, "small") == measure(20, "large")
