"""Launch (validation, the audience frozen once), pause, resume, cancel, relaunch refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from campaigns import services
from campaigns.errors import BroadcastError
from campaigns.models import Broadcast, BroadcastRecipient
from campaigns.status import allowed_actions
from messaging.models import Contact, Touchpoint

from .broadcast_fixtures import (
    NOW,
    draft,
    dynamic_segment,
    marketer,
    people,
    states,
    static_segment,
    templates,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return marketer()


S = Broadcast.Status


def launch(broadcast: Broadcast, staff, now: dt.datetime = NOW) -> Broadcast:
    return services.broadcast_launch(broadcast=broadcast, actor=staff, now=now)


def test_overlapping_segments_give_each_contact_one_recipient(staff):
    templates()
    a, b, c = people(3)
    broadcast = draft([static_segment([a, b]), static_segment([b, c]), static_segment([a, c])])

    launched = launch(broadcast, staff)

    assert launched.status == S.SENDING and broadcast.status == S.SENDING
    assert launched.recipient_count == 3
    assert launched.launched_at == NOW and launched.launched_by == staff
    assert states(broadcast) == {"p-0": "pending", "p-1": "pending", "p-2": "pending"}
    assert set(BroadcastRecipient.objects.values_list("send_after", flat=True)) == {NOW}
    entry = AuditEntry.objects.get(action="launch")
    assert entry.context["details"]["recipients"] == 3


def test_exclusion_segments_and_erased_contacts_are_left_out(staff):
    templates()
    a, b, c, d = people(4)
    Contact.objects.filter(pk=d.pk).update(erased_at=NOW)
    broadcast = draft([static_segment([a, b, c, d])], exclude=[static_segment([b])])
    launch(broadcast, staff)
    assert states(broadcast) == {"p-0": "pending", "p-2": "pending"}


def test_dynamic_segments_are_evaluated_at_launch(staff):
    templates()
    people(2, prefix="ldn", tz="Europe/London")
    people(2, prefix="jkt", tz="Asia/Jakarta")
    london = dynamic_segment({"field": "timezone", "op": "eq", "value": "Europe/London"})
    everyone = dynamic_segment({"all": []})
    broadcast = draft([london, everyone], exclude=[london])
    launch(broadcast, staff)
    assert sorted(states(broadcast)) == ["jkt-0", "jkt-1"]


@pytest.mark.parametrize(
    ("fields", "segments", "errors"),
    [
        ({}, False, {"segments"}),
        ({"template_slug": "nope"}, True, {"template_slug"}),
        ({"channel_order": ["pigeon"]}, True, {"channel_order"}),
        ({"channel_order": ["whatsapp"]}, True, {"template_slug"}),  # no WhatsApp template
        ({"send_mode": "at"}, True, {"send_at"}),
        ({"send_mode": "at", "send_at": NOW - dt.timedelta(hours=1)}, True, {"send_at"}),
        ({"send_mode": "local"}, True, {"local_send_date", "local_send_time"}),
        (
            {
                "send_mode": "local",
                "local_send_date": dt.date(2026, 11, 20),
                "local_send_time": dt.time(9, 0),
            },
            True,
            {"local_send_date"},
        ),
        ({"end_at": NOW - dt.timedelta(minutes=1)}, True, {"end_at"}),
        (
            {"send_mode": "at", "send_at": NOW + dt.timedelta(hours=2), "end_at": NOW},
            True,
            {"end_at"},
        ),
        ({"throttle_per_minute": 0}, True, {"throttle_per_minute"}),
    ],
)
def test_launch_refuses_bad_settings_with_field_errors(staff, fields, segments, errors):
    templates()
    seg = static_segment(people(2))
    broadcast = draft([seg] if segments else [], **fields)
    with pytest.raises(BroadcastError) as raised:
        launch(broadcast, staff)
    assert set(raised.value.errors) == errors, raised.value.errors
    broadcast.refresh_from_db()
    assert broadcast.status == S.DRAFT
    assert not BroadcastRecipient.objects.exists()
    assert not AuditEntry.objects.filter(action="launch").exists()


def test_an_empty_audience_is_refused_and_nothing_is_written(staff):
    templates()
    a = people(1)[0]
    broadcast = draft([static_segment([a])], exclude=[static_segment([a])])
    with pytest.raises(BroadcastError) as raised:
        launch(broadcast, staff)
    assert "segments" in raised.value.errors
    broadcast.refresh_from_db()
    assert broadcast.status == S.DRAFT and broadcast.recipient_count == 0


def test_at_a_time_is_scheduled_until_then(staff):
    templates()
    seg = static_segment(people(2))
    at = NOW + dt.timedelta(hours=3)
    broadcast = launch(draft([seg], send_mode="at", send_at=at), staff)
    assert broadcast.status == S.SCHEDULED
    assert set(BroadcastRecipient.objects.values_list("send_after", flat=True)) == {at}
    assert services.run_due(now=NOW + dt.timedelta(hours=2)) == 0
    broadcast.refresh_from_db()
    assert broadcast.status == S.SCHEDULED
    assert services.run_due(now=at) == 2
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED
    assert set(states(broadcast).values()) == {"sent"}


def test_local_time_is_each_contacts_own_zone(staff):
    """9:00 on 24 Nov in each contact's zone; Asia/Tokyo's 9:00 (00:00 UTC) passed at launch
    (12:00 UTC) by 12 h: skipped, with a touchpoint. Kolkata's passed 6.5 h ago: skipped too.
    A zone passed by less than the grace (an hour) is sent at once."""
    templates()
    people(2, prefix="ldn", tz="Europe/London")
    people(1, prefix="nyc", tz="America/New_York")
    people(1, prefix="tyo", tz="Asia/Tokyo")
    people(1, prefix="bad", tz="Not/AZone")
    seg = dynamic_segment({"all": []})
    day = dt.date(2026, 11, 24)
    launched_at = dt.datetime(2026, 11, 24, 0, 30, tzinfo=dt.UTC)  # Tokyo: 9:30, in the grace
    broadcast = launch(
        draft([seg], send_mode="local", local_send_date=day, local_send_time=dt.time(9)),
        staff,
        now=launched_at,
    )
    after = dict(BroadcastRecipient.objects.values_list("contact__external_id", "send_after"))
    assert after == {
        "ldn-0": dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC),
        "ldn-1": dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC),
        "nyc-0": dt.datetime(2026, 11, 24, 14, 0, tzinfo=dt.UTC),
        "tyo-0": launched_at,
        "bad-0": dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC),  # an unknown zone is UTC
    }
    assert broadcast.status == S.SENDING  # Tokyo is due now

    late = launch(
        draft(
            [seg], slug="late", send_mode="local", local_send_date=day, local_send_time=dt.time(9)
        ),
        staff,
        now=dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC),  # Tokyo 12:00: 3 h late
    )
    assert states(late)["tyo-0"] == "skipped"
    row = BroadcastRecipient.objects.get(broadcast=late, contact__external_id="tyo-0")
    assert row.reason == services.LOCAL_TIME_PASSED
    assert states(late)["ldn-0"] == "pending"
    assert late.status == S.SCHEDULED  # London's 9:00 is ahead
    tp = Touchpoint.objects.get(kind="broadcast_skipped", contact__external_id="tyo-0")
    assert tp.data["broadcast"] == "late" and tp.data["reason"] == services.LOCAL_TIME_PASSED


def test_local_time_across_a_dst_change(staff):
    """New York changes to EST on 1 Nov 2026: 9:00 is 13:00 UTC on 31 Oct, 14:00 on 2 Nov."""
    templates()
    seg = static_segment(people(1, prefix="nyc", tz="America/New_York"))
    for slug, day, hour in (
        ("before", dt.date(2026, 10, 31), 13),
        ("after", dt.date(2026, 11, 2), 14),
    ):
        broadcast = launch(
            draft(
                [seg], slug=slug, send_mode="local", local_send_date=day, local_send_time=dt.time(9)
            ),
            staff,
            now=dt.datetime(2026, 10, 30, tzinfo=dt.UTC),
        )
        row = BroadcastRecipient.objects.get(broadcast=broadcast)
        assert row.send_after == dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def test_launch_query_count_does_not_depend_on_the_audience(staff):
    templates()

    def queries(n: int, slug: str, mode: dict) -> int:
        people(n, prefix=slug)
        seg = dynamic_segment({"field": "external_id", "op": "contains", "value": f"{slug}-"})
        broadcast = draft(
            [seg, static_segment([])], exclude=[static_segment([])], slug=slug, **mode
        )
        with CaptureQueriesContext(connection) as ctx:
            launch(broadcast, staff)
        assert BroadcastRecipient.objects.filter(broadcast=broadcast).count() == n
        return len(ctx.captured_queries)

    local = {
        "send_mode": "local",
        "local_send_date": dt.date(2026, 11, 24),
        "local_send_time": dt.time(9),
    }
    assert queries(3, "small", {}) == queries(40, "large", {})
    assert queries(3, "lsmall", local) == queries(40, "llarge", local)


def test_relaunch_is_refused_and_never_freezes_twice(staff):
    templates()
    a, b = people(2)
    seg = static_segment([a])
    broadcast = launch(draft([seg]), staff)
    static_segment_add_b = static_segment([b])
    broadcast.segments.add(static_segment_add_b)
    for status in (S.SCHEDULED, S.SENDING, S.PAUSED, S.COMPLETED, S.CANCELLED):
        Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
        with pytest.raises(BroadcastError) as raised:
            launch(broadcast, staff)
        assert "status" in raised.value.errors
    assert states(broadcast) == {"p-0": "pending"}


def test_pause_resume_cancel_follow_the_transition_table(staff):
    templates()
    broadcast = draft([static_segment(people(3))])
    assert allowed_actions(broadcast.status) == ["launch"]
    for action in (services.broadcast_pause, services.broadcast_resume, services.broadcast_cancel):
        with pytest.raises(BroadcastError):
            action(broadcast=broadcast, actor=staff, now=NOW)
    launch(broadcast, staff)
    assert allowed_actions(broadcast.status) == ["pause", "cancel"]
    with pytest.raises(BroadcastError):
        services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW)
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW)
    assert broadcast.status == S.PAUSED and broadcast.paused_at == NOW
    assert allowed_actions(broadcast.status) == ["resume", "cancel"]
    assert services.run_due(now=NOW) == 0  # paused: nothing is claimed
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW)
    assert broadcast.status == S.SENDING
    services.broadcast_cancel(broadcast=broadcast, actor=staff, now=NOW)
    assert broadcast.status == S.CANCELLED
    assert set(states(broadcast).values()) == {"cancelled"}
    assert allowed_actions(broadcast.status) == []
    for action in (
        services.broadcast_pause,
        services.broadcast_resume,
        services.broadcast_cancel,
        services.broadcast_launch,
    ):
        with pytest.raises(BroadcastError):
            action(broadcast=broadcast, actor=staff, now=NOW)
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "launch",
        "pause",
        "resume",
        "cancel",
    ]
    assert services.run_due(now=NOW) == 0


def test_resume_before_the_send_time_is_scheduled_again(staff):
    templates()
    at = NOW + dt.timedelta(hours=1)
    broadcast = launch(draft([static_segment(people(1))], send_mode="at", send_at=at), staff)
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW)
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW)
    assert broadcast.status == S.SCHEDULED
