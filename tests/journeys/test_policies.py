"""Send policies, alone (messaging.policies.evaluate_send) and through journeys: consent,
quiet hours in the contact's timezone (across a DST change), the frequency cap, the WhatsApp
24-hour window, and the timeline entry every decision leaves."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
import time_machine

from channels_app.events import TrackingEvent
from journeys import engine
from journeys.models import Enrollment, Journey, Step
from journeys.services import event_ingest
from messaging import policies
from messaging.models import Message, Touchpoint
from messaging.provider_events import tracking_events_apply
from messaging.services import consent_set, messages_sweep
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NEW_YORK = "America/New_York"
# Saturday 2026-03-07 22:30 EST; clocks go forward at 02:00 that night.
SATURDAY_2230_NY = dt.datetime(2026, 3, 8, 3, 30, tzinfo=UTC)
# 08:00 EDT on Sunday 2026-03-08 (it would be 13:00 UTC without the DST change).
SUNDAY_0800_NY = dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
MIDDAY = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CONTENT_SID = "HX" + "0" * 31 + "1"
_journeys = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_sender_rate_limit(settings):
    """The per-sender rate limit has its own tests. Its in-process bucket (embedded runs)
    reads time.monotonic, which time_machine moves, so a send in travelled time would
    otherwise hold back real-time sends of later tests in the same process."""
    settings.SENDER_RATE_LIMITS = {"sms": 0.0, "whatsapp": 0.0, "email": 0.0}


def send_journey(
    *,
    template: str = "promo",
    channel: str = "sms",
    fallback_channels: list[str] | None = None,
    category: str = "marketing",
    **fields,
) -> Journey:
    n = next(_journeys)
    journey = Journey.objects.create(
        name=f"Policies {n}",
        slug=f"policies-{n}",
        status="active",
        trigger_event="promo.started",
        category=category,
        **fields,
    )
    config = {"template": template, "channel": channel}
    if fallback_channels is not None:
        config["fallback_channels"] = fallback_channels
    Step.objects.create(journey=journey, position=0, key="promo", kind="send", config=config)
    return journey


def subscribed(**fields):
    contact = ContactFactory(**{"phone": "+14155552671", "timezone": NEW_YORK, **fields})
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    return contact


def touchpoints(contact, kind: str) -> list[Touchpoint]:
    return list(Touchpoint.objects.filter(contact=contact, kind=kind).order_by("id"))


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):
    def _ingest(contact, **properties):
        with django_capture_on_commit_callbacks(execute=True):
            event_ingest(name="promo.started", contact=contact, properties=properties)

    return _ingest


@pytest.fixture
def advance(django_capture_on_commit_callbacks):
    def _advance(now: dt.datetime) -> None:
        with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
            engine.run_due(now=now)

    return _advance


# --- consent ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "channel", "status", "allowed", "code"),
    [
        ("marketing", "sms", "subscribed", True, ""),
        ("marketing", "sms", "unknown", False, "no_consent"),
        ("marketing", "sms", None, False, "no_consent"),
        ("marketing", "sms", "unsubscribed", False, "unsubscribed"),
        ("marketing", "whatsapp", "subscribed", True, ""),
        ("marketing", "whatsapp", None, False, "no_consent"),
        ("marketing", "whatsapp", "unsubscribed", False, "unsubscribed"),
        ("marketing", "email", "subscribed", True, ""),
        ("marketing", "email", "unknown", True, ""),
        ("marketing", "email", None, True, ""),
        ("marketing", "email", "unsubscribed", False, "unsubscribed"),
        ("transactional", "sms", None, True, ""),
        ("transactional", "sms", "unknown", True, ""),
        ("transactional", "sms", "subscribed", True, ""),
        ("transactional", "sms", "unsubscribed", False, "unsubscribed"),
        ("transactional", "whatsapp", None, True, ""),
        ("transactional", "whatsapp", "unsubscribed", False, "unsubscribed"),
        ("transactional", "email", None, True, ""),
        ("transactional", "email", "unsubscribed", False, "unsubscribed"),
    ],
)
def test_consent_rules(category, channel, status, allowed, code):
    contact = ContactFactory(
        phone="+14155552671",
        email="ada@example.com",
        timezone="UTC",
        last_inbound_whatsapp_at=MIDDAY - dt.timedelta(hours=1),
    )
    if status is not None:
        ConsentFactory(contact=contact, channel=channel, status=status)

    decision = policies.evaluate_send(
        contact=contact,
        channel=channel,
        category=category,
        address=contact.address_for(channel),
        now=MIDDAY,
    )

    assert (decision.allowed, decision.code, decision.held) == (allowed, code, False)
    if not allowed:
        assert channel in decision.reason


def test_consent_change_is_honoured_by_the_next_journey_send(simulator, ingest):
    TemplateFactory(slug="promo", channel="sms", body="Spring sale!")
    TemplateFactory(slug="promo", channel="email", subject="Spring sale", body="Spring sale!")
    send_journey(fallback_channels=["email"])
    contact = ContactFactory(phone="+14155552671", email="ada@example.com", timezone="UTC")

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact)  # sms consent unknown: marketing goes by email
        consent_set(contact=contact, channel="sms", status="subscribed", source="api")
        ingest(contact)

    assert [m["channel"] for m in simulator.messages()] == ["email", "sms"]
    [skipped] = touchpoints(contact, "send_skipped")
    assert (skipped.channel, skipped.data["reason"]) == (
        "sms",
        "marketing sms needs an explicit subscription",
    )
    [fell_back] = touchpoints(contact, "fell_back")
    assert (fell_back.channel, fell_back.data["skipped"]) == ("email", ["sms"])


# --- quiet hours -----------------------------------------------------------------------


def test_marketing_sms_in_quiet_hours_is_held_until_morning_across_dst(simulator, ingest, advance):
    TemplateFactory(slug="promo", channel="sms", body="Spring sale starts now!")
    send_journey()
    contact = subscribed()

    with time_machine.travel(SATURDAY_2230_NY, tick=False):
        ingest(contact)

    assert simulator.messages() == []
    assert not Message.objects.filter(
        contact=contact
    ).exists()  # held, not dropped, and not yet a message
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "waiting"
    assert enrollment.current_step.key == "promo"
    assert enrollment.wait_until == enrollment.next_run_at == SUNDAY_0800_NY
    [held] = touchpoints(contact, "send_held")
    assert held.channel == "sms"
    assert held.data["until"] == SUNDAY_0800_NY.isoformat()
    assert held.data["reason"] == f"quiet hours in {NEW_YORK}"

    advance(SUNDAY_0800_NY - dt.timedelta(minutes=1))
    assert simulator.messages() == []
    assert Enrollment.objects.get(contact=contact).state == "waiting"
    advance(SUNDAY_0800_NY)

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"], sent["body"]) == (
        "sms",
        "+14155552671",
        "Spring sale starts now!\nReply STOP to opt out",  # marketing: the opt-out line
    )
    message = Message.objects.get(contact=contact)
    assert (message.status, message.category) == ("sent", "marketing")
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"
    assert len(touchpoints(contact, "send_held")) == 1
    assert len(touchpoints(contact, "sent")) == 1


@pytest.mark.parametrize(
    ("start", "end", "local", "held_until"),
    [
        # The default window (21:00–08:00) would hold 22:30; this one starts at 23:00.
        (dt.time(23, 0), dt.time(7, 0), dt.datetime(2026, 3, 7, 22, 30), None),
        (dt.time(23, 0), dt.time(7, 0), dt.datetime(2026, 3, 7, 23, 30), "2026-03-08T11:00"),
        (dt.time(22, 0), dt.time(9, 0), dt.datetime(2026, 3, 7, 22, 30), "2026-03-08T13:00"),
        # Early morning, before the window closes: held until later the same day.
        (dt.time(21, 0), dt.time(8, 0), dt.datetime(2026, 3, 10, 7, 15), "2026-03-10T12:00"),
        (dt.time(21, 0), dt.time(8, 0), dt.datetime(2026, 3, 10, 8, 0), None),
        # A window that does not cross midnight.
        (dt.time(12, 0), dt.time(14, 0), dt.datetime(2026, 3, 10, 13, 0), "2026-03-10T18:00"),
        (dt.time(12, 0), dt.time(14, 0), dt.datetime(2026, 3, 10, 22, 30), None),
        # Start equal to end: no quiet hours at all.
        (dt.time(0, 0), dt.time(0, 0), dt.datetime(2026, 3, 7, 23, 59), None),
    ],
)
def test_per_journey_quiet_hours(simulator, ingest, start, end, local, held_until):
    TemplateFactory(slug="promo", channel="sms", body="Sale!")
    send_journey(quiet_hours_start=start, quiet_hours_end=end)
    contact = subscribed()
    now = local.replace(tzinfo=ZoneInfo(NEW_YORK))

    with time_machine.travel(now, tick=False):
        ingest(contact)

    enrollment = Enrollment.objects.get(contact=contact)
    if held_until is None:
        assert len(simulator.messages()) == 1
        assert enrollment.state == "completed"
        assert not touchpoints(contact, "send_held")
    else:
        until = dt.datetime.fromisoformat(held_until).replace(tzinfo=UTC)
        assert simulator.messages() == []
        assert (enrollment.state, enrollment.wait_until) == ("waiting", until)
        assert touchpoints(contact, "send_held")[0].data["until"] == until.isoformat()


@pytest.mark.parametrize(
    ("category", "channel"),
    [("transactional", "sms"), ("transactional", "whatsapp"), ("marketing", "email")],
)
def test_quiet_hours_apply_only_to_marketing_sms_and_whatsapp(simulator, ingest, category, channel):
    TemplateFactory(
        slug="promo",
        channel=channel,
        body="Your order shipped",
        subject="Shipped" if channel == "email" else "",
    )
    send_journey(channel=channel, fallback_channels=[], category=category)
    contact = subscribed(
        email="ada@example.com", last_inbound_whatsapp_at=SATURDAY_2230_NY - dt.timedelta(hours=1)
    )

    with time_machine.travel(SATURDAY_2230_NY, tick=False):
        ingest(contact)

    [sent] = simulator.messages()
    assert sent["channel"] == channel
    assert Enrollment.objects.get(contact=contact).state == "completed"
    assert not touchpoints(contact, "send_held")


def test_quiet_hours_evaluated_directly():
    contact = ContactFactory(timezone=NEW_YORK)
    ConsentFactory(contact=contact, channel="sms", status="subscribed")

    decision = policies.evaluate_send(
        contact=contact,
        channel="sms",
        category="marketing",
        address=contact.phone,
        now=SATURDAY_2230_NY,
    )

    assert (decision.allowed, decision.code, decision.hold_until) == (
        False,
        "quiet_hours",
        SUNDAY_0800_NY,
    )
    assert policies.evaluate_send(
        contact=contact,
        channel="sms",
        category="marketing",
        address=contact.phone,
        now=SATURDAY_2230_NY,
        quiet_hours=None,
    ).allowed


def test_a_contact_with_an_unknown_timezone_gets_utc_quiet_hours():
    contact = ContactFactory(timezone="Mars/Olympus_Mons")
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    decision = policies.evaluate_send(
        contact=contact,
        channel="sms",
        category="marketing",
        address=contact.phone,
        now=dt.datetime(2026, 3, 10, 22, 0, tzinfo=UTC),
    )
    assert decision.hold_until == dt.datetime(2026, 3, 11, 8, 0, tzinfo=UTC)


# --- frequency cap ---------------------------------------------------------------------


def _earlier_message(contact, created_at: dt.datetime, **fields) -> Message:
    message = Message.objects.create(
        direction="outbound",
        channel=fields.pop("channel", "sms"),
        contact=contact,
        to_address=contact.phone,
        body="earlier",
        status=fields.pop("status", "sent"),
        category=fields.pop("category", "marketing"),
        **fields,
    )
    Message.objects.filter(pk=message.pk).update(created_at=created_at)
    return message


@pytest.fixture
def capped(settings):
    settings.FREQUENCY_CAP_MESSAGES = 2
    settings.FREQUENCY_CAP_WINDOW_HOURS = 24


def _at_the_cap(contact) -> dt.datetime:
    """Two counted marketing messages in the last 24 h, plus some that do not count."""
    oldest = MIDDAY - dt.timedelta(hours=20)
    _earlier_message(contact, oldest)
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=3), channel="email")
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=2), status="failed")
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=1), category="transactional")
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=30))  # outside the window
    return oldest


def test_frequency_cap_hold_waits_until_the_oldest_message_ages_out(
    capped, simulator, ingest, advance
):
    TemplateFactory(slug="promo", channel="sms", body="Another offer")
    send_journey(frequency_cap_action="hold")
    contact = subscribed(timezone="UTC")
    release = _at_the_cap(contact) + dt.timedelta(hours=24)

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact)

    assert simulator.messages() == []
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.wait_until) == ("waiting", release)
    [held] = touchpoints(contact, "send_held")
    assert held.data["until"] == release.isoformat()
    assert held.data["reason"] == "frequency cap: 2 marketing messages per 24 h"

    advance(release - dt.timedelta(seconds=1))
    assert simulator.messages() == []
    assert Enrollment.objects.get(contact=contact).state == "waiting"
    advance(release)

    assert [m["body"] for m in simulator.messages()] == ["Another offer\nReply STOP to opt out"]
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"


def test_frequency_cap_counts_recent_marketing_sends_that_went_out(capped):
    contact = subscribed(timezone="UTC")
    oldest = _at_the_cap(contact)
    # Failed, transactional and older-than-the-window messages do not count: the release is
    # when the oldest of the two counted ones leaves the 24-hour window.
    assert policies.frequency_cap_release(contact=contact, now=MIDDAY) == oldest + dt.timedelta(
        hours=24
    )
    Message.objects.filter(contact=contact, created_at=oldest).update(status="skipped")
    assert policies.frequency_cap_release(contact=contact, now=MIDDAY) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL's locks",
)
def test_two_sends_at_once_cannot_both_pass_the_last_slot_of_the_cap(capped):
    """Two workers deciding marketing sends to one contact at once: the second waits for the
    first's transaction (its message counted) instead of counting the same N-1."""
    import threading

    from django.db import OperationalError, connection, transaction

    contact = subscribed(timezone="UTC")
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=1))  # one slot left of two
    deciding, release = threading.Event(), threading.Event()

    def first_worker():
        try:
            with transaction.atomic():
                assert policies.frequency_cap_release(contact=contact, now=MIDDAY) is None
                _earlier_message(contact, MIDDAY)  # takes the last slot
                deciding.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    try:
        assert deciding.wait(10)
        with pytest.raises(OperationalError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            # Without the lock this would count one message and say "under the cap".
            policies.frequency_cap_release(contact=contact, now=MIDDAY)
    finally:
        release.set()
        worker.join()
    with transaction.atomic():
        assert policies.frequency_cap_release(contact=contact, now=MIDDAY) is not None


def test_a_send_held_by_the_cap_is_allowed_at_the_time_it_was_held_until(capped):
    contact = subscribed(timezone="UTC")
    _at_the_cap(contact)
    release = policies.frequency_cap_release(contact=contact, now=MIDDAY)
    held = policies.evaluate_send(
        contact=contact, channel="sms", category="marketing", address=contact.phone, now=MIDDAY
    )
    assert release is not None and held.hold_until == release

    at_release = policies.evaluate_send(
        contact=contact, channel="sms", category="marketing", address=contact.phone, now=release
    )

    assert (at_release.allowed, at_release.held) == (True, False)


def test_frequency_cap_ignores_transactional_sends(capped):
    contact = subscribed(timezone="UTC")
    _at_the_cap(contact)
    decision = policies.evaluate_send(
        contact=contact, channel="sms", category="transactional", address=contact.phone, now=MIDDAY
    )
    assert decision.allowed and not decision.held


def test_frequency_cap_skip_leaves_the_reason_on_the_timeline(capped, simulator, ingest):
    TemplateFactory(slug="promo", channel="sms", body="Another offer")
    send_journey(frequency_cap_action="skip", fallback_channels=[])
    contact = subscribed(timezone="UTC")
    _at_the_cap(contact)

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact)

    assert simulator.messages() == []
    assert not Message.objects.filter(contact=contact, body__startswith="Another offer").exists()
    [skipped] = touchpoints(contact, "send_skipped")
    assert skipped.channel == "sms"
    assert skipped.data["reason"] == "frequency cap: 2 marketing messages per 24 h"
    assert not touchpoints(contact, "send_held")
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "completed"
    assert enrollment.context["steps"]["promo"]["outcome"] == "not_sent"


def test_below_the_cap_sends(capped, simulator, ingest):
    TemplateFactory(slug="promo", channel="sms", body="Another offer")
    send_journey()
    contact = subscribed(timezone="UTC")
    _earlier_message(contact, MIDDAY - dt.timedelta(hours=1))

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact)

    assert [m["body"] for m in simulator.messages()] == ["Another offer\nReply STOP to opt out"]


# --- WhatsApp 24-hour window -----------------------------------------------------------


@pytest.fixture
def whatsapp_templates():
    def _make(content_sid: str = CONTENT_SID):
        TemplateFactory(
            slug="shipped",
            channel="whatsapp",
            body="Order {{ event.order_id }} has shipped, {{ contact.first_name }}!",
            content_sid=content_sid,
            content_variables={"1": "{{ event.order_id }}", "2": "{{ contact.first_name }}"}
            if content_sid
            else {},
        )
        TemplateFactory(
            slug="shipped",
            channel="email",
            subject="Shipped",
            body="Order {{ event.order_id }} has shipped.",
        )

    return _make


def _whatsapp_contact(last_inbound: dt.datetime | None):
    return ContactFactory(
        first_name="Ada",
        phone="+14155552671",
        whatsapp="+14155552699",
        email="ada@example.com",
        last_inbound_whatsapp_at=last_inbound,
    )


def _whatsapp_journey():
    return send_journey(
        template="shipped",
        channel="whatsapp",
        fallback_channels=["email"],
        category="transactional",
    )


def test_whatsapp_inside_the_window_sends_the_freeform_body(simulator, ingest, whatsapp_templates):
    whatsapp_templates()
    _whatsapp_journey()
    contact = _whatsapp_contact(MIDDAY - dt.timedelta(hours=23, minutes=59))

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact, order_id="42")

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("whatsapp", "whatsapp:+14155552699")
    assert sent["body"] == "Order 42 has shipped, Ada!"
    assert sent["content_sid"] is None
    message = Message.objects.get(contact=contact)
    # The row keeps the template (the freeform/template choice is made at send time).
    assert message.status == "sent"


@pytest.mark.parametrize(
    "last_inbound", [None, MIDDAY - dt.timedelta(hours=24), MIDDAY - dt.timedelta(days=3)]
)
def test_whatsapp_outside_the_window_sends_the_approved_template(
    simulator, ingest, whatsapp_templates, last_inbound
):
    whatsapp_templates()
    _whatsapp_journey()
    contact = _whatsapp_contact(last_inbound)

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact, order_id="42")

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("whatsapp", "whatsapp:+14155552699")
    assert sent["content_sid"] == CONTENT_SID
    assert sent["content_variables"] == {"1": "42", "2": "Ada"}
    assert sent["body"] == ""
    message = Message.objects.get(contact=contact)
    assert message.content_sid == CONTENT_SID
    assert message.content_variables == {"1": "42", "2": "Ada"}


def test_whatsapp_outside_the_window_without_a_template_falls_back(
    simulator, ingest, whatsapp_templates
):
    whatsapp_templates(content_sid="")
    _whatsapp_journey()
    contact = _whatsapp_contact(MIDDAY - dt.timedelta(days=2))

    with time_machine.travel(MIDDAY, tick=False):
        ingest(contact, order_id="42")

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("email", "ada@example.com")
    assert simulator.messages(channel="whatsapp") == []
    [skipped] = touchpoints(contact, "send_skipped")
    assert skipped.channel == "whatsapp"
    assert skipped.data["reason"] == (
        "outside the WhatsApp 24-hour window and the template has no approved content SID"
    )
    [fell_back] = touchpoints(contact, "fell_back")
    assert (fell_back.channel, fell_back.data["skipped"]) == ("email", ["whatsapp"])


# --- every decision on the timeline ----------------------------------------------------


def test_every_decision_leaves_a_touchpoint(simulator, ingest):
    """One contact, four journeys at 22:30 in New York: sent, held, skipped, fell back."""
    TemplateFactory(slug="receipt", channel="sms", body="Receipt")
    TemplateFactory(slug="promo", channel="sms", body="Promo")
    TemplateFactory(slug="promo", channel="email", subject="Promo", body="Promo")
    send_journey(template="receipt", category="transactional", fallback_channels=[])
    send_journey(template="promo", fallback_channels=[])  # quiet hours
    send_journey(template="news", channel="whatsapp", fallback_channels=[])  # no template
    send_journey(template="promo", channel="whatsapp", fallback_channels=["email"])
    contact = subscribed(email="ada@example.com")

    with time_machine.travel(SATURDAY_2230_NY, tick=False):
        ingest(contact)

    # Marketing email ends with its unsubscribe footer (messaging.unsubscribe).
    assert sorted((m["channel"], m["body"].split("\n")[0]) for m in simulator.messages()) == [
        ("email", "Promo"),
        ("sms", "Receipt"),
    ]
    by_kind: dict[str, list[Touchpoint]] = {}
    for tp in Touchpoint.objects.filter(contact=contact).order_by("id"):
        by_kind.setdefault(tp.kind, []).append(tp)
    assert sorted(t.channel for t in by_kind["sent"]) == ["email", "sms"]
    [held] = by_kind["send_held"]
    assert (held.channel, held.data["until"]) == ("sms", SUNDAY_0800_NY.isoformat())
    assert sorted((t.channel, t.data["reason"]) for t in by_kind["send_skipped"]) == [
        ("whatsapp", "no whatsapp template 'news'"),
        ("whatsapp", "no whatsapp template 'promo'"),
    ]
    [fell_back] = by_kind["fell_back"]
    assert (fell_back.channel, fell_back.data["skipped"]) == ("email", ["whatsapp"])
    states = sorted(Enrollment.objects.filter(contact=contact).values_list("state", flat=True))
    assert states == ["completed", "completed", "completed", "waiting"]


# --- a fallback held by quiet hours --------------------------------------------------------


def test_a_fallback_held_by_quiet_hours_is_sent_when_they_end(
    simulator, ingest, advance, django_capture_on_commit_callbacks
):
    """An SMS sent in the afternoon is reported undelivered at night, so the step's next
    channel (WhatsApp, marketing) falls in quiet hours. The timeline says "held until 08:00":
    at 08:00 it must go out (held, not dropped), whichever job picks it up."""
    TemplateFactory(slug="promo", channel="sms", body="Sale!")
    TemplateFactory(slug="promo", channel="whatsapp", body="Sale!", content_sid=CONTENT_SID)
    send_journey(fallback_channels=["whatsapp"])
    contact = subscribed()
    ConsentFactory(contact=contact, channel="whatsapp", status="subscribed")
    afternoon = dt.datetime(2026, 3, 7, 20, 0, tzinfo=UTC)  # 15:00 in New York

    with time_machine.travel(afternoon, tick=False):
        ingest(contact)
    [sms] = simulator.messages()
    message = Message.objects.get(contact=contact)

    undelivered = TrackingEvent(
        event_type="undelivered",
        provider="twilio",
        channel="sms",
        timestamp=SATURDAY_2230_NY,
        event_id=f"{sms['id']}:undelivered",
        provider_message_id=sms["id"],
        message_id=str(message.pk),
        error_code="30003",
    )
    with (
        time_machine.travel(SATURDAY_2230_NY, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        tracking_events_apply(events=[undelivered])
    message.refresh_from_db()
    assert message.status == "undelivered"
    [held] = touchpoints(contact, "send_held")
    assert (held.channel, held.data["until"]) == ("whatsapp", SUNDAY_0800_NY.isoformat())
    assert simulator.messages(channel="whatsapp") == []

    later = SUNDAY_0800_NY + dt.timedelta(minutes=10)
    advance(later)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        messages_sweep(now=later)

    [whatsapp] = simulator.messages(channel="whatsapp")
    assert whatsapp["to"] == "whatsapp:+14155552671"
