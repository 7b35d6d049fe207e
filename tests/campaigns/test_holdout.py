"""Holdout: a deterministic share of the audience is the control group, never sent
anything; the report compares control and treated conversion (intent-to-treat) with the
uplift and its significance (insights' test, registered into campaigns)."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns import services
from campaigns.experiment_report import experiment_report
from campaigns.models import BroadcastRecipient
from messaging.models import Contact, Direction, Message, Touchpoint

from .broadcast_fixtures import NOW, draft, marketer, people, static_segment, templates

pytestmark = pytest.mark.django_db
R = BroadcastRecipient.State
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def staff(db):
    return marketer()


@pytest.fixture
def send(django_capture_on_commit_callbacks, simulator):
    def run(now: dt.datetime = NOW) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return services.run_due(now=now)

    return run


def event(contact_id: int, at: dt.datetime, name: str = "order.completed") -> None:
    Touchpoint.objects.create(
        contact_id=contact_id,
        kind="event",
        direction=Direction.INBOUND,
        occurred_at=at,
        data={"name": name},
        dedupe_key=f"event:{contact_id}:{at.isoformat()}:{name}",
    )


def test_the_control_group_is_never_sent_anything(staff, send):
    templates()
    contacts = people(80)
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(contacts)], holdout_percent=25), actor=staff, now=NOW
    )
    send()
    send(NOW + HOUR)

    control = set(
        BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.CONTROL).values_list(
            "contact_id", flat=True
        )
    )
    assert 8 <= len(control) <= 32  # 25 % of 80, give or take
    assert not Message.objects.filter(contact_id__in=control).exists()
    assert not Touchpoint.objects.filter(
        contact_id__in=control, kind__startswith="broadcast_"
    ).exists()
    treated = BroadcastRecipient.objects.filter(broadcast=broadcast).exclude(state=R.CONTROL)
    assert set(treated.values_list("state", flat=True)) == {"sent"}
    assert Message.objects.count() == 80 - len(control)
    broadcast.refresh_from_db()
    assert broadcast.status == "completed"
    # the control rows keep the time they would have been sent, and say why they were not
    row = BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.CONTROL).first()
    assert row.send_after == NOW and "control group" in row.reason and row.message_id is None


def test_cancelling_leaves_the_control_group_as_it_is(staff):
    templates()
    contacts = people(40)
    broadcast = services.broadcast_launch(
        broadcast=draft([static_segment(contacts)], holdout_percent=50), actor=staff, now=NOW
    )
    control = BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.CONTROL).count()
    services.broadcast_cancel(broadcast=broadcast, actor=staff, now=NOW)
    assert (
        BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.CONTROL).count() == control
    )
    assert control > 0


def test_the_holdout_comparison_counts_conversions_within_the_window(staff, send):
    templates("promo", ["email"])
    Contact.objects.bulk_create(
        Contact(external_id=f"h-{i}", email=f"h{i}@example.com") for i in range(600)
    )
    broadcast = services.broadcast_launch(
        broadcast=draft(
            [static_segment(Contact.objects.filter(external_id__startswith="h-"))],
            channel_order=["email"],
            category="transactional",
            holdout_percent=50,
            conversion_events=["order.completed"],
            conversion_window_hours=24,
        ),
        actor=staff,
        now=NOW,
    )
    send()
    Message.objects.update(created_at=NOW, sent_at=NOW)
    rows = BroadcastRecipient.objects.filter(broadcast=broadcast)
    control = list(rows.filter(state=R.CONTROL).values_list("contact_id", flat=True))
    treated = list(rows.exclude(state=R.CONTROL).values_list("contact_id", flat=True))
    for contact_id in control[:10]:
        event(contact_id, NOW + HOUR)
    for contact_id in control[10:40]:
        event(contact_id, NOW + 30 * HOUR)  # after the window: not a conversion
    for contact_id in treated[:60]:
        event(contact_id, NOW + 2 * HOUR)
    for contact_id in treated[60:90]:
        event(contact_id, NOW - HOUR)  # before the send: not one either
        event(contact_id, NOW + HOUR, name="page.viewed")

    holdout = experiment_report(broadcast=broadcast)["holdout"]
    assert holdout["control"] == len(control) and holdout["treated"] == len(treated)
    assert holdout["control_converted"] == 10 and holdout["treated_converted"] == 60
    assert holdout["uplift_points"] == pytest.approx((60 / len(treated) - 10 / len(control)) * 100)
    # insights' significance test was registered into campaigns when it loaded
    assert holdout["test"] in ("chi2", "fisher") and holdout["p_value"] < 0.05
    assert holdout["significant"] is True


def test_both_groups_are_anchored_at_the_planned_send_time(staff, send):
    """A treated message sent late (a throttle, a retry) does not move its window: both
    groups count conversions from the planned send time."""
    templates("promo", ["email"])
    Contact.objects.bulk_create(
        Contact(external_id=f"h-{i}", email=f"h{i}@example.com") for i in range(200)
    )
    broadcast = services.broadcast_launch(
        broadcast=draft(
            [static_segment(Contact.objects.filter(external_id__startswith="h-"))],
            channel_order=["email"],
            category="transactional",
            holdout_percent=50,
            conversion_events=["order.completed"],
            conversion_window_hours=24,
        ),
        actor=staff,
        now=NOW,
    )
    send()
    Message.objects.update(created_at=NOW + 5 * HOUR, sent_at=NOW + 5 * HOUR)  # sent late
    rows = BroadcastRecipient.objects.filter(broadcast=broadcast)
    control = list(rows.filter(state=R.CONTROL).values_list("contact_id", flat=True))
    treated = list(rows.exclude(state=R.CONTROL).values_list("contact_id", flat=True))
    assert all(NOW <= at < NOW + HOUR for at in rows.values_list("send_after", flat=True))
    for contact_id in control[:5] + treated[:7]:
        event(contact_id, NOW + HOUR)  # after the planned send, before the late one
    for contact_id in control[5:8] + treated[7:9]:
        event(contact_id, NOW + 26 * HOUR)  # within 24 h of the late send only
    holdout = experiment_report(broadcast=broadcast)["holdout"]
    assert (holdout["control_converted"], holdout["treated_converted"]) == (5, 7)


def test_no_experiment_no_experiment_report(staff):
    templates()
    broadcast = draft([static_segment(people(2))])
    assert experiment_report(broadcast=broadcast) is None
