"""The dry run predicts what the sending engine does: the same mixed audience, dry-run, then
launched and dispatched for real (campaigns.services), and the counts compared."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from campaigns import services
from campaigns.dryrun import broadcast_dry_run
from campaigns.models import BroadcastRecipient
from tests.factories import ConsentFactory, ContactFactory

from .ui_helpers import NOW, broadcast, recent_marketing, sms_subscriber, static_segment, templates

pytestmark = pytest.mark.django_db


def _whatsapp_subscriber(**fields):
    contact = ContactFactory(**fields)
    ConsentFactory(contact=contact, channel="whatsapp")
    return contact


def _audience():
    unsubscribed = ContactFactory()
    for channel in ("sms", "whatsapp", "email"):
        ConsentFactory(contact=unsubscribed, channel=channel, status="unsubscribed")
    capped = sms_subscriber()
    recent_marketing(capped, 2, at=NOW)
    invalid = sms_subscriber(phone_invalid=True)
    excluded = sms_subscriber()
    included = [
        sms_subscriber(),
        sms_subscriber(preferred_channel="email"),
        _whatsapp_subscriber(
            whatsapp="+14155550800", last_inbound_whatsapp_at=NOW - dt.timedelta(hours=1)
        ),
        _whatsapp_subscriber(whatsapp="+14155550801"),  # outside the 24-hour window
        unsubscribed,
        ContactFactory(phone="", email_undeliverable=True),
        sms_subscriber(timezone="Asia/Tokyo"),  # 21:00 there: quiet hours
        sms_subscriber(timezone="America/New_York"),  # 07:00 there: quiet hours
        capped,
        invalid,
        excluded,
        ContactFactory(erased_at=NOW),
    ]
    return static_segment("mixed", included), static_segment("out", [excluded])


def _engine_outcome(b) -> dict:
    rows = BroadcastRecipient.objects.filter(broadcast=b)
    per_channel = Counter(rows.values_list("state", "channel"))
    return {
        "audience": rows.count(),
        "sent": rows.filter(state="sent").count(),
        "held": rows.filter(state="held").count(),
        "skipped": rows.filter(state="skipped").count(),
        "per_channel": {
            (state, channel): n for (state, channel), n in per_channel.items() if channel
        },
    }


def _dry_outcome(result) -> dict:
    per_channel = {}
    for row in result["channels"]:
        if row["sent"]:
            per_channel[("sent", row["channel"])] = row["sent"]
        if row["held"]:
            per_channel[("held", row["channel"])] = row["held"]
    return {
        "audience": result["audience"],
        "sent": result["sent"],
        "held": result["held"],
        "skipped": result["skipped"],
        "per_channel": per_channel,
    }


@pytest.mark.parametrize(
    ("category", "cap_action", "order"),
    [
        ("marketing", "hold", ["whatsapp", "sms", "email"]),
        ("marketing", "skip", ["preferred", "sms", "email"]),
        ("transactional", "hold", ["sms", "whatsapp", "email"]),
    ],
)
def test_the_dry_run_agrees_with_launch_and_dispatch(
    settings, simulator, django_capture_on_commit_callbacks, category, cap_action, order
):
    settings.FREQUENCY_CAP_MESSAGES = 2
    templates(channels=("whatsapp", "sms", "email"))
    mixed, out = _audience()
    b = broadcast(
        [mixed],
        exclude=[out],
        category=category,
        frequency_cap_action=cap_action,
        channel_order=order,
    )
    predicted = _dry_outcome(broadcast_dry_run(broadcast=b, now=NOW))

    with django_capture_on_commit_callbacks(execute=True):
        services.broadcast_launch(broadcast=b, actor="tests", now=NOW)
        services.run_due(now=NOW)

    actual = _engine_outcome(b)
    assert predicted == actual
    assert predicted["sent"] > 0 and predicted["audience"] == 10
    if category == "marketing" and cap_action == "hold":
        assert predicted["held"] == 3  # Tokyo and New York quiet hours, the capped contact
