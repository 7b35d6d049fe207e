"""Dispatching a launched broadcast: the journeys' policy path (consent, quiet hours held and
released, frequency cap), throttle, send window, outcomes as touchpoints, query counts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import services
from campaigns.errors import BroadcastError
from campaigns.models import Broadcast, BroadcastRecipient
from messaging.models import Consent, Message, Touchpoint
from tests.factories import ConsentFactory, TemplateFactory

from .broadcast_fixtures import (
    NOW,
    draft,
    kinds,
    marketer,
    messages_per_contact,
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


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """Run the dispatcher inline at `now`; deliveries it queues run too (eager Celery)."""

    def run(now: dt.datetime = NOW, limit: int | None = None) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return services.run_due(now=now, limit=limit)

    return run


def launch(broadcast: Broadcast, staff, now: dt.datetime = NOW) -> Broadcast:
    return services.broadcast_launch(broadcast=broadcast, actor=staff, now=now)


def test_sends_each_recipient_once_through_the_provider(staff, simulator, send):
    templates()
    contacts = people(3)
    broadcast = launch(draft([static_segment(contacts)]), staff)

    assert send() == 3

    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED and broadcast.completed_at == NOW
    assert set(states(broadcast).values()) == {"sent"}
    assert messages_per_contact(broadcast) == {"p-0": 1, "p-1": 1, "p-2": 1}
    received = simulator.messages(channel="sms", direction="outbound")
    assert sorted(m["to"] for m in received) == sorted(c.phone for c in contacts)
    # (a marketing SMS: the opt-out line follows the template's text)
    assert received[0]["body"] == "Hi Ada, our sale starts now!\nReply STOP to opt out"
    row = BroadcastRecipient.objects.select_related("message").get(contact=contacts[0])
    assert row.channel == "sms" and row.message.status == "sent"
    assert row.message.idempotency_key == f"broadcast:{broadcast.pk}:{contacts[0].pk}:sms"
    assert row.message.source == "broadcast" and row.message.category == "marketing"
    assert kinds(contacts[0]) == ["broadcast_sent"]
    tp = Touchpoint.objects.get(kind="broadcast_sent", contact=contacts[0])
    assert tp.data["broadcast"] == "winter-sale" and tp.message_id == row.message_id
    assert send() == 0  # nothing left: nothing sent twice


def test_consent_unsubscribed_is_never_sent_and_the_next_channel_is_tried(staff, send):
    templates()
    subscribed, unsubscribed, nothing = people(3)
    Consent.objects.filter(contact=unsubscribed).update(status="unsubscribed")
    Consent.objects.filter(contact=nothing).delete()
    ConsentFactory(contact=nothing, channel="email", status="unsubscribed")
    broadcast = launch(draft([static_segment([subscribed, unsubscribed, nothing])]), staff)
    # Unsubscribed after launch: still never sent.
    Consent.objects.filter(contact=subscribed).update(status="unsubscribed")

    send()

    assert not Message.objects.filter(channel="sms").exists()
    # Marketing email may go to a contact with unknown email consent.
    assert states(broadcast) == {"p-0": "sent", "p-1": "sent", "p-2": "skipped"}
    assert set(Message.objects.values_list("channel", flat=True)) == {"email"}
    skipped = BroadcastRecipient.objects.get(contact=nothing)
    assert "sms: marketing sms needs an explicit subscription" in skipped.reason
    assert "email: contact unsubscribed from email" in skipped.reason
    tp = Touchpoint.objects.get(kind="broadcast_skipped", contact=nothing)
    assert tp.data["reason"] == skipped.reason


def test_preferred_channel_goes_first(staff, send):
    templates()
    a, b = people(2)
    a.preferred_channel = "email"
    a.save()
    broadcast = launch(draft([static_segment([a, b])], channel_order=["preferred", "sms"]), staff)
    send()
    assert dict(
        BroadcastRecipient.objects.filter(broadcast=broadcast).values_list(
            "contact__external_id", "channel"
        )
    ) == {"p-0": "email", "p-1": "sms"}


def test_preferred_only_without_a_preferred_channel_is_skipped_with_the_reason(staff, send):
    templates()
    (contact,) = people(1)
    broadcast = launch(draft([static_segment([contact])], channel_order=["preferred"]), staff)
    send()
    row = BroadcastRecipient.objects.get(broadcast=broadcast)
    assert row.state == "skipped" and "no preferred channel" in row.reason
    assert not Message.objects.exists()


def test_the_beat_runs_the_dispatcher_every_interval(settings):
    from config.celery import app

    app.finalize(auto=True)
    entry = app.conf.beat_schedule["dispatch-broadcasts"]
    assert entry["task"] == "campaigns.dispatch_due"
    assert entry["schedule"] == settings.BROADCAST_DISPATCH_INTERVAL_SECONDS


def test_whatsapp_template_outside_the_window(staff, send):
    TemplateFactory(slug="promo", channel="whatsapp", body="Sale!", content_sid="HX" + "1" * 32)
    (contact,) = people(1, sms="")
    contact.whatsapp = "+14155550199"
    contact.save()
    ConsentFactory(contact=contact, channel="whatsapp", status="subscribed")
    broadcast = launch(draft([static_segment([contact])], channel_order=["whatsapp"]), staff)
    send()
    message = Message.objects.get()
    assert message.channel == "whatsapp" and message.content_sid.startswith("HX")
    assert states(broadcast) == {"p-0": "sent"}


def test_quiet_hours_hold_then_release(staff, send):
    """12:00 UTC is 21:00 in Tokyo: quiet until 8:00 local (23:00 UTC); London sends now."""
    templates(channels=["sms"])
    (tokyo,) = people(1, prefix="tyo", tz="Asia/Tokyo")
    (london,) = people(1, prefix="ldn")
    broadcast = launch(draft([static_segment([tokyo, london])], channel_order=["sms"]), staff)

    send()

    release = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)
    row = BroadcastRecipient.objects.get(contact=tokyo)
    assert (row.state, row.send_after, row.channel) == ("held", release, "sms")
    assert row.reason == "quiet hours in Asia/Tokyo"
    assert states(broadcast)["ldn-0"] == "sent"
    assert not Message.objects.filter(contact=tokyo).exists()
    assert kinds(tokyo) == ["broadcast_held"]
    broadcast.refresh_from_db()
    assert broadcast.status == S.SENDING  # a held recipient keeps it open

    assert send(now=release - dt.timedelta(minutes=1)) == 0
    assert send(now=release) == 1
    assert states(broadcast)["tyo-0"] == "sent"
    assert kinds(tokyo) == ["broadcast_held", "broadcast_sent"]
    assert messages_per_contact(broadcast) == {"tyo-0": 1, "ldn-0": 1}
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED


def test_transactional_ignores_quiet_hours(staff, send):
    templates(channels=["sms"])
    (tokyo,) = people(1, prefix="tyo", tz="Asia/Tokyo")
    broadcast = launch(
        draft([static_segment([tokyo])], channel_order=["sms"], category="transactional"), staff
    )
    send()
    assert states(broadcast) == {"tyo-0": "sent"}


def test_frequency_cap_skip_or_hold(staff, send, settings):
    settings.FREQUENCY_CAP_MESSAGES = 1
    templates()
    a, b = people(2)
    first = launch(draft([static_segment([a, b])], slug="first"), staff)
    send()
    assert set(states(first).values()) == {"sent"}
    skip = launch(draft([static_segment([a])], slug="skip", frequency_cap_action="skip"), staff)
    hold = launch(draft([static_segment([b])], slug="hold"), staff)
    send()
    assert states(skip) == {"p-0": "skipped"}
    assert "frequency cap" in BroadcastRecipient.objects.get(broadcast=skip).reason
    assert states(hold) == {"p-1": "held"}


def test_a_template_that_fails_to_render_fails_the_recipient(staff, send):
    # Saved fine (the sample contact has no `n`); this contact's makes the range too large.
    TemplateFactory(slug="promo", channel="sms", body="{{ (1..contact.n) | join: ',' }}")
    (contact,) = people(1)
    contact.attributes = {"n": 10**7}
    contact.save()
    broadcast = launch(draft([static_segment([contact])], channel_order=["sms"]), staff)
    send()
    row = BroadcastRecipient.objects.get(broadcast=broadcast)
    assert row.state == "failed" and row.message.status == "failed"
    assert kinds(contact) == ["broadcast_failed"]


def test_throttle_holds_the_configured_rate(staff, send):
    """Ticks every 2 s for 5 minutes at 120/min: the claims hold the rate, with no burst."""
    templates()
    seg = static_segment(people(700))
    broadcast = launch(draft([seg], throttle_per_minute=120), staff)
    per_tick = []
    for tick in range(150):  # 0 s … 298 s
        per_tick.append(services.broadcasts_dispatch(now=NOW + dt.timedelta(seconds=2 * tick)))
    claimed = [sum(len(c.recipient_ids) for c in claims) for claims in per_tick]
    # 2 per second over the 298 s between the first and the last tick, plus the first slot.
    assert abs(sum(claimed) - (298 * 2 + 1)) <= 1, sum(claimed)
    assert max(claimed) <= 5  # never a burst: about 4 per 2 s tick
    # A late tick catches up what it missed, but a long gap is not a burst: at most
    # CATCH_UP_TICKS ticks' worth (10 s at 2/s, plus the slot at the tick itself).
    late = services.broadcasts_dispatch(now=NOW + dt.timedelta(seconds=298 + 6))
    assert sum(len(c.recipient_ids) for c in late) == 12
    later = services.broadcasts_dispatch(now=NOW + dt.timedelta(minutes=30))
    assert sum(len(c.recipient_ids) for c in later) == 21
    assert broadcast.pk == per_tick[-1][0].broadcast_id


def test_throttle_grant_arithmetic(settings):
    settings.BROADCAST_DISPATCH_INTERVAL_SECONDS = 2
    n, start = services.throttle_grant(per_minute=60, tat=None, now=NOW, limit=100)
    assert (n, start) == (1, NOW)
    tat = NOW + dt.timedelta(seconds=1)
    n, _ = services.throttle_grant(per_minute=60, tat=tat, now=NOW, limit=100)
    assert n == 0
    n, start = services.throttle_grant(
        per_minute=60, tat=NOW - dt.timedelta(hours=1), now=NOW, limit=100
    )
    assert (n, start) == (11, NOW - dt.timedelta(seconds=10))  # 5 ticks' catch-up
    n, _ = services.throttle_grant(per_minute=60, tat=NOW - dt.timedelta(hours=1), now=NOW, limit=4)
    assert n == 4


def test_send_window_end_skips_the_rest(staff, send):
    templates()
    seg = static_segment(people(10))
    end = NOW + dt.timedelta(minutes=1)
    broadcast = launch(draft([seg], throttle_per_minute=60, end_at=end), staff)
    send(now=NOW)
    send(now=NOW + dt.timedelta(seconds=2))
    sent = sum(1 for s in states(broadcast).values() if s == "sent")
    assert 1 <= sent < 10
    send(now=end)
    assert sorted(states(broadcast).values()) == ["sent"] * sent + ["skipped"] * (10 - sent)
    assert set(
        BroadcastRecipient.objects.filter(state="skipped").values_list("reason", flat=True)
    ) == {services.WINDOW_ENDED}
    assert Touchpoint.objects.filter(kind="broadcast_skipped").count() == 10 - sent
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED
    assert Message.objects.count() == sent


def test_pause_mid_send_then_resume_sends_the_rest_once(staff, send):
    templates()
    seg = static_segment(people(12))
    broadcast = launch(draft([seg]), staff)
    # A batch is claimed, then the broadcast is paused before its task runs.
    claims = services.broadcasts_dispatch(now=NOW, limit=5)
    services.recipients_send(recipient_ids=claims[0].recipient_ids[:2], now=NOW)
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW)
    outcome = services.recipients_send(recipient_ids=claims[0].recipient_ids[2:], now=NOW)
    assert outcome == {"returned": 3}
    returned = BroadcastRecipient.objects.filter(pk__in=claims[0].recipient_ids[2:])
    assert set(returned.values_list("attempts", flat=True)) == {0}  # not counted as a crash
    assert send(now=NOW + dt.timedelta(seconds=5)) == 0
    assert Message.objects.count() == 2
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW + dt.timedelta(minutes=1))
    assert broadcast.status == S.SENDING  # the handed-back rows are due at once
    send(now=NOW + dt.timedelta(minutes=1))
    assert messages_per_contact(broadcast) == {f"p-{i}": 1 for i in range(12)}
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED


def test_cancel_mid_send_sends_nothing_more(staff, send):
    templates()
    seg = static_segment(people(10))
    broadcast = launch(draft([seg]), staff)
    claims = services.broadcasts_dispatch(now=NOW, limit=4)
    services.recipients_send(recipient_ids=claims[0].recipient_ids, now=NOW)
    claims = services.broadcasts_dispatch(now=NOW, limit=3)  # claimed, task not run yet
    services.broadcast_cancel(broadcast=broadcast, actor=staff, now=NOW)
    assert services.recipients_send(recipient_ids=claims[0].recipient_ids, now=NOW) == {}
    send(now=NOW + dt.timedelta(hours=1))
    assert sorted(states(broadcast).values()) == ["cancelled"] * 6 + ["sent"] * 4
    assert Message.objects.count() == 4
    assert BroadcastRecipient.objects.filter(reason=services.CANCELLED_REASON).count() == 6


def test_dispatch_query_count_does_not_depend_on_the_audience(staff):
    templates()

    def queries(n: int, slug: str) -> tuple[int, int]:
        seg = static_segment(people(n, prefix=slug))
        broadcast = launch(draft([seg], slug=slug), staff)
        with CaptureQueriesContext(connection) as claim:
            claims = services.broadcasts_dispatch(now=NOW, limit=5)
        with CaptureQueriesContext(connection) as sent:
            services.recipients_send(recipient_ids=claims[0].recipient_ids, now=NOW)
        services.broadcast_cancel(broadcast=broadcast, actor=staff, now=NOW)
        return len(claim.captured_queries), len(sent.captured_queries)

    assert queries(6, "small") == queries(60, "large")


def test_a_second_send_of_the_same_recipients_sends_nothing(staff, send):
    """A duplicate task (or a stale claim) for recipients already sent is a no-op."""
    templates()
    seg = static_segment(people(3))
    broadcast = launch(draft([seg]), staff)
    claims = services.broadcasts_dispatch(now=NOW)
    ids = claims[0].recipient_ids
    assert services.recipients_send(recipient_ids=ids, now=NOW) == {"sent": 3}
    assert services.recipients_send(recipient_ids=ids, now=NOW) == {}
    assert messages_per_contact(broadcast) == {"p-0": 1, "p-1": 1, "p-2": 1}


def test_a_window_that_ends_before_a_scheduled_broadcast_started(staff, send):
    """Local time: launched before every zone's time, the window closes first for some."""
    templates()
    (nyc,) = people(1, prefix="nyc", tz="America/New_York")
    (tyo,) = people(1, prefix="tyo", tz="Asia/Tokyo")
    day = dt.date(2026, 11, 24)
    end = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)  # after Tokyo's 9:00, before NYC's
    broadcast = launch(
        draft(
            [static_segment([nyc, tyo])],
            send_mode="local",
            local_send_date=day,
            local_send_time=dt.time(9),
            end_at=end,
            category="transactional",
        ),
        staff,
    )
    assert broadcast.status == S.SCHEDULED
    send(now=dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC))
    assert states(broadcast) == {"nyc-0": "pending", "tyo-0": "sent"}
    send(now=end)
    assert states(broadcast) == {"nyc-0": "skipped", "tyo-0": "sent"}
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED

    # A window that closes before anyone's send time is refused at launch.
    refused = draft(
        [static_segment([nyc])],
        slug="refused",
        send_mode="local",
        local_send_date=day,
        local_send_time=dt.time(9),
        end_at=end,
    )
    with pytest.raises(BroadcastError) as raised:
        launch(refused, staff)
    assert set(raised.value.errors) == {"end_at"}


def test_a_scheduled_broadcast_whose_window_closed_unstarted_completes(staff, send):
    templates()
    (nyc,) = people(1, prefix="nyc", tz="America/New_York")
    broadcast = launch(
        draft(
            [static_segment([nyc])],
            send_mode="at",
            send_at=NOW + dt.timedelta(hours=1),
            end_at=NOW + dt.timedelta(hours=2),
        ),
        staff,
    )
    # Paused through its whole window, resumed after: the rest is skipped, not sent late.
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW)
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW + dt.timedelta(hours=3))
    send(now=NOW + dt.timedelta(hours=3))
    assert states(broadcast) == {"nyc-0": "skipped"}
    assert not Message.objects.exists()


def test_the_beat_task_drains_a_backlog_by_chaining(
    staff, settings, django_capture_on_commit_callbacks
):
    """dispatch_due claims a few rounds; the last send task it queues calls it again, until
    nothing is due (eager Celery: the tasks run inline)."""
    from campaigns.tasks import MAX_ROUNDS_PER_CALL, dispatch_due

    settings.BROADCAST_BATCH_SIZE = 2
    settings.BROADCAST_CHUNK = 1
    templates()
    n = 2 * MAX_ROUNDS_PER_CALL * 2 + 3  # more than two calls' worth
    broadcast = launch(draft([static_segment(people(n))], category="transactional"), staff)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_due()
        dispatch_due()  # the next beat tick completes it
    assert set(states(broadcast).values()) == {"sent"}
    assert len(messages_per_contact(broadcast)) == n
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED
