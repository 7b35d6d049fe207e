"""Each step kind on small journeys built with the models: send (channel choice, fallback
on a skipped channel and on a provider failure), wait, wait_for_event, branch, survey, exit,
and a broken step pointer. Messages go through the real SDKs to the provider simulator."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from channels_app.events import InboundEvent
from channels_app.keywords import classify_keyword
from journeys import engine
from journeys.models import (
    Enrollment,
    Event,
    Journey,
    JourneyMessage,
    Step,
    StepVisit,
    SurveyResponse,
)
from journeys.services import enrollment_start, event_ingest
from journeys.surveys import parse_choice, parse_nps
from messaging.models import Message, Touchpoint
from messaging.provider_events import inbound_message_apply
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
_journeys = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_sender_rate_limit(settings):
    """The per-sender rate limit has its own tests. Its in-process bucket (embedded runs)
    reads time.monotonic, which time_machine moves, so a send in travelled time would
    otherwise hold back real-time sends of later tests in the same process."""
    settings.SENDER_RATE_LIMITS = {"sms": 0.0, "whatsapp": 0.0, "email": 0.0}


# --- Building blocks ------------------------------------------------------------------


def step(key: str, kind: str, next_step: str = "", /, **config) -> dict:
    return {"key": key, "kind": kind, "next_step": next_step, "config": config}


def build_journey(*steps: dict, trigger: str = "order.completed", **fields) -> Journey:
    n = next(_journeys)
    journey = Journey.objects.create(
        name=f"Steps {n}", slug=f"steps-{n}", status="active", trigger_event=trigger, **fields
    )
    for position, spec in enumerate(steps):
        Step.objects.create(journey=journey, position=position, **spec)
    return journey


def templates(slug: str, *channels: str, body: str | None = None) -> None:
    for channel in channels:
        extra = {"subject": f"{slug} by email"} if channel == "email" else {}
        if body is not None:
            extra["body"] = body
        TemplateFactory(slug=slug, channel=channel, **extra)


def kinds(contact) -> list[str]:
    return list(
        Touchpoint.objects.filter(contact=contact)
        .order_by("occurred_at", "id")
        .values_list("kind", flat=True)
    )


def touchpoints(contact, kind: str) -> list[Touchpoint]:
    return list(Touchpoint.objects.filter(contact=contact, kind=kind).order_by("id"))


def visited(enrollment: Enrollment) -> list[str]:
    return list(enrollment.visits.order_by("id").values_list("step__key", flat=True))


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):
    """event_ingest with its on-commit work (advancing, delivering) run inline."""

    def _ingest(name: str, contact, **properties) -> Event:
        with django_capture_on_commit_callbacks(execute=True):
            event, created = event_ingest(name=name, contact=contact, properties=properties)
        assert created
        return event

    return _ingest


@pytest.fixture
def reply(django_capture_on_commit_callbacks):
    """The contact texts back: an inbound SMS applied as the Twilio webhook would."""

    def _reply(contact, body: str) -> Message:
        event = InboundEvent(
            provider="twilio",
            channel="sms",
            timestamp=timezone.now(),
            event_id=f"SM{uuid.uuid4().hex}",
            sender=contact.phone,
            recipient=settings.TWILIO_SMS_FROM,
            body=body,
            full_body=body,
            keyword=classify_keyword(body),
        )
        with django_capture_on_commit_callbacks(execute=True):
            inbound = inbound_message_apply(event=event)
        assert inbound is not None
        return inbound

    return _reply


@pytest.fixture
def advance(django_capture_on_commit_callbacks):
    """Run the scheduler at a given instant, inline."""

    def _advance(now: dt.datetime) -> None:
        # Not asserting run_due's count: it claims every due enrollment in the database.
        with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
            engine.run_due(now=now)

    return _advance


# --- send ------------------------------------------------------------------------------


def test_send_goes_to_the_first_allowed_channel(simulator, ingest):
    templates("thanks", "sms", "whatsapp", "email")
    journey = build_journey(step("thank-you", "send", template="thanks", channel="sms"))
    contact = ContactFactory(phone="+14155552671", first_name="Ada")

    ingest("order.completed", contact, order_id="1001")

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("sms", "+14155552671")
    assert sent["body"] == "Hi Ada, thanks for order 1001!"
    message = Message.objects.get(contact=contact)
    assert (message.channel, message.status) == ("sms", "sent")
    assert message.provider_message_id == sent["id"]
    link = JourneyMessage.objects.get(enrollment__contact=contact)
    assert (link.message_id, link.step.key, link.journey_id) == (
        message.pk,
        "thank-you",
        journey.pk,
    )
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "completed"
    assert enrollment.context["steps"]["thank-you"] == {
        "outcome": "sent",
        "channel": "sms",
        "message_id": str(message.pk),
    }
    assert sorted(kinds(contact)) == sorted(
        [
            "event",
            "journey_entered",
            "step_send",
            "queued",
            "sending",
            "sent",
            "journey_completed",
        ]
    )


@pytest.mark.parametrize("preferred", ["email", "whatsapp", "sms"])
def test_send_on_the_preferred_channel(simulator, ingest, preferred):
    templates("thanks", "sms", "whatsapp", "email")
    build_journey(step("thank-you", "send", template="thanks"))  # channel defaults to preferred
    contact = ContactFactory(
        phone="+14155552671",
        whatsapp="+14155552672",
        email="ada@example.com",
        preferred_channel=preferred,
        last_inbound_whatsapp_at=timezone.now(),  # inside the window: freeform allowed
    )

    ingest("order.completed", contact, order_id="7")

    [sent] = simulator.messages()
    assert sent["channel"] == preferred
    assert (
        sent["to"]
        == {
            "sms": "+14155552671",
            "whatsapp": "whatsapp:+14155552672",
            "email": "ada@example.com",
        }[preferred]
    )
    assert Message.objects.get(contact=contact).channel == preferred
    assert not touchpoints(contact, "fell_back")


def test_send_without_a_preferred_channel_uses_the_default_order(simulator, ingest):
    templates("thanks", "email", "sms")
    build_journey(step("thank-you", "send", template="thanks"))
    contact = ContactFactory(phone="+14155552671", preferred_channel="")

    ingest("order.completed", contact, order_id="7")

    # SMS comes first; WhatsApp has no template and is never reached.
    assert [m["channel"] for m in simulator.messages()] == ["sms"]
    assert not touchpoints(contact, "send_skipped")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no_address", "contact has no sms address"),
        ("unsubscribed", "contact unsubscribed from sms"),
        ("no_template", "no sms template 'thanks'"),
    ],
)
def test_send_falls_back_when_the_first_channel_is_skipped(simulator, ingest, case, reason):
    templates("thanks", "email", *([] if case == "no_template" else ["sms"]))
    build_journey(
        step("thank-you", "send", template="thanks", channel="sms", fallback_channels=["email"])
    )
    contact = ContactFactory(
        phone="" if case == "no_address" else "+14155552671", email="ada@example.com"
    )
    if case == "unsubscribed":
        ConsentFactory(contact=contact, channel="sms", status="unsubscribed")

    ingest("order.completed", contact, order_id="9")

    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("email", "ada@example.com")
    assert sent["subject"] == "thanks by email"
    assert list(Message.objects.filter(contact=contact).values_list("channel", "status")) == [
        ("email", "sent")
    ]
    [skipped] = touchpoints(contact, "send_skipped")
    assert (skipped.channel, skipped.data["reason"], skipped.data["step"]) == (
        "sms",
        reason,
        "thank-you",
    )
    [fell_back] = touchpoints(contact, "fell_back")
    assert (fell_back.channel, fell_back.data["skipped"]) == ("email", ["sms"])
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.context["steps"]["thank-you"]["channel"] == "email"
    assert enrollment.state == "completed"


def test_send_with_no_allowed_channel_moves_on_without_a_message(simulator, ingest):
    templates("thanks", "sms")
    build_journey(
        step("thank-you", "send", template="thanks", channel="sms", fallback_channels=["email"]),
        step("after", "exit", reason="went on"),
    )
    contact = ContactFactory(phone="+14155552671")
    ConsentFactory(contact=contact, channel="sms", status="unsubscribed")

    ingest("order.completed", contact, order_id="9")

    assert simulator.messages() == [] and simulator.rejected() == []
    assert not Message.objects.filter(contact=contact).exists()
    assert [(t.channel, t.data["reason"]) for t in touchpoints(contact, "send_skipped")] == [
        ("sms", "contact unsubscribed from sms"),
        ("email", "no email template 'thanks'"),
    ]
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.context["steps"]["thank-you"]["outcome"] == "not_sent"
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "went on")


def test_permanent_provider_failure_sends_on_the_steps_next_channel(simulator, ingest):
    templates("thanks", "sms", "whatsapp", "email")
    build_journey(step("thank-you", "send", template="thanks", channel="sms"))
    # Twilio's magic number: 21211, "not a valid phone number" (permanent).
    contact = ContactFactory(phone="+15005550001", email="ada@example.com")

    ingest("order.completed", contact, order_id="55")

    [rejected] = simulator.rejected()
    assert (rejected["to"], rejected["code"]) == ("+15005550001", 21211)
    # WhatsApp would go to the same (now known invalid) number: skipped; email is next.
    [sent] = simulator.messages()
    assert (sent["channel"], sent["to"]) == ("email", "ada@example.com")
    assert "order 55" in sent["body"]
    sms = Message.objects.get(contact=contact, channel="sms")
    email = Message.objects.get(contact=contact, channel="email")
    assert (sms.status, sms.error_code) == ("failed", "21211")
    assert email.status == "sent"
    assert email.journey_link.step.key == "thank-you"
    contact.refresh_from_db()
    assert contact.phone_invalid
    [skipped] = touchpoints(contact, "send_skipped")
    assert (skipped.channel, skipped.data["reason"]) == (
        "whatsapp",
        "WhatsApp number was rejected as invalid",
    )
    [fell_back] = touchpoints(contact, "fell_back")
    assert fell_back.channel == "email"
    assert fell_back.data["skipped"] == ["sms", "whatsapp"]
    output = Enrollment.objects.get(contact=contact).context["steps"]["thank-you"]
    assert output["channel"] == "email"
    assert output["message_id"] == str(email.pk)
    assert output["fell_back_from"] == str(sms.pk)


# --- wait ------------------------------------------------------------------------------


def test_wait_for_a_duration(simulator, ingest, advance):
    templates("later", "sms", body="Still there?")
    build_journey(
        step("pause", "wait", duration_seconds=3600),
        step("nudge", "send", template="later", channel="sms"),
    )
    contact = ContactFactory()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        ingest("order.completed", contact)

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "waiting"
    assert enrollment.wait_until == enrollment.next_run_at == start + dt.timedelta(hours=1)
    advance(start + dt.timedelta(minutes=59))
    assert simulator.messages() == []
    assert visited(enrollment) == ["pause"]

    advance(start + dt.timedelta(hours=1))
    assert [m["body"] for m in simulator.messages()] == ["Still there?"]
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"
    assert visited(enrollment) == ["pause", "nudge"]


def test_an_early_wake_up_keeps_waiting(simulator, ingest):
    templates("later", "sms", body="Still there?")
    build_journey(
        step("pause", "wait", duration_seconds=3600),
        step("nudge", "send", template="later", channel="sms"),
    )
    contact = ContactFactory()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        ingest("order.completed", contact)
    enrollment = Enrollment.objects.get(contact=contact)

    # A duplicate task (not the scheduler) runs it early: nothing happens.
    assert (
        engine.enrollment_advance(enrollment_id=enrollment.pk, now=start + dt.timedelta(minutes=5))
        == "waiting"
    )
    enrollment.refresh_from_db()
    assert enrollment.next_run_at == start + dt.timedelta(hours=1)
    assert simulator.messages() == []


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 07:00 EST: 09:00 the same day.
        (dt.datetime(2026, 3, 5, 12, 0, tzinfo=UTC), dt.datetime(2026, 3, 5, 14, 0, tzinfo=UTC)),
        # 10:00 EST: 09:00 tomorrow.
        (dt.datetime(2026, 3, 5, 15, 0, tzinfo=UTC), dt.datetime(2026, 3, 6, 14, 0, tzinfo=UTC)),
        # Saturday 19:30 EST; clocks go forward overnight, so 09:00 EDT is 13:00 UTC.
        (dt.datetime(2026, 3, 8, 0, 30, tzinfo=UTC), dt.datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # Saturday 23:30 EST, already Sunday in UTC.
        (dt.datetime(2026, 3, 8, 4, 30, tzinfo=UTC), dt.datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # Autumn: 09:00 EST after clocks went back is 14:00 UTC.
        (dt.datetime(2026, 10, 31, 23, 0, tzinfo=UTC), dt.datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_wait_until_a_local_time_in_the_contacts_timezone(ingest, now, expected):
    build_journey(step("morning", "wait", until_time="09:00"), step("done", "exit"))
    contact = ContactFactory(timezone="America/New_York")
    with time_machine.travel(now, tick=False):
        ingest("order.completed", contact)

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "waiting"
    assert enrollment.wait_until == expected
    assert enrollment.next_run_at == expected


def test_wait_until_across_the_dst_change_runs_at_nine_local(simulator, ingest, advance):
    templates("morning", "sms", body="Good morning!")
    build_journey(
        step("morning", "wait", until_time="09:00"),
        step("hello", "send", template="morning", channel="sms"),
    )
    contact = ContactFactory(timezone="America/New_York")
    saturday_evening = dt.datetime(2026, 3, 7, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with time_machine.travel(saturday_evening, tick=False):
        ingest("order.completed", contact)

    # 08:59 EDT is 12:59 UTC: not yet (an EST reading would have sent at 14:00 UTC,
    # a naive UTC reading at 09:00 UTC).
    advance(dt.datetime(2026, 3, 8, 12, 59, tzinfo=UTC))
    assert simulator.messages() == []
    assert Enrollment.objects.get(contact=contact).state == "waiting"
    advance(dt.datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    assert [m["body"] for m in simulator.messages()] == ["Good morning!"]
    assert Enrollment.objects.get(contact=contact).state == "completed"


# --- wait_for_event --------------------------------------------------------------------


def _payment_journey() -> Journey:
    templates("paid", "sms", body="Payment received, thanks!")
    templates("unpaid", "sms", body="Your order is waiting for payment.")
    return build_journey(
        step(
            "await-payment",
            "wait_for_event",
            event="order.paid",
            timeout_seconds=86400,
            on_event="thanks",
            on_timeout="remind",
        ),
        step("remind", "send", "end", template="unpaid", channel="sms"),
        step("thanks", "send", template="paid", channel="sms"),
    )


def test_wait_for_event_takes_the_on_event_path(simulator, ingest):
    _payment_journey()
    contact, other = ContactFactory(), ContactFactory()
    ingest("order.completed", contact, order_id="1")
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.waiting_for) == ("waiting", "order.paid")

    ingest("order.paid", other, order_id="1")  # someone else's payment wakes nothing
    enrollment.refresh_from_db()
    assert enrollment.state == "waiting" and simulator.messages() == []

    paid = ingest("order.paid", contact, amount=30)

    assert paid.result["resumed"] == [enrollment.pk]
    assert [m["body"] for m in simulator.messages()] == ["Payment received, thanks!"]
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"
    assert visited(enrollment) == ["await-payment", "thanks"]
    output = enrollment.context["steps"]["await-payment"]
    assert output == {"outcome": "event", "event_id": paid.pk, "properties": {"amount": 30}}


def test_wait_for_event_takes_the_timeout_path(simulator, ingest, advance):
    _payment_journey()
    contact = ContactFactory()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        ingest("order.completed", contact, order_id="1")

    advance(start + dt.timedelta(hours=23, minutes=59))
    assert simulator.messages() == []
    assert Enrollment.objects.get(contact=contact).state == "waiting"
    advance(start + dt.timedelta(days=1))

    assert [m["body"] for m in simulator.messages()] == ["Your order is waiting for payment."]
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "completed"
    assert visited(enrollment) == ["await-payment", "remind"]
    assert enrollment.context["steps"]["await-payment"] == {"outcome": "timeout"}
    # The payment arriving afterwards changes nothing.
    ingest("order.paid", contact)
    assert len(simulator.messages()) == 1


def test_wait_for_a_reply(simulator, ingest, reply):
    templates("question", "sms", body="Would you like a call back?")
    templates("ack", "sms", body="Thanks, we'll call you.")
    build_journey(
        step("ask", "send", template="question", channel="sms"),
        step(
            "await-reply",
            "wait_for_event",
            event="message.replied",
            timeout_seconds=3600,
            on_event="ack",
            on_timeout="end",
        ),
        step("ack", "send", template="ack", channel="sms"),
    )
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)
    assert Enrollment.objects.get(contact=contact).waiting_for == "message.replied"

    inbound = reply(contact, "Yes please")

    assert [m["body"] for m in simulator.messages(direction="outbound")] == [
        "Would you like a call back?",
        "Thanks, we'll call you.",
    ]
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "completed"
    output = enrollment.context["steps"]["await-reply"]
    assert output["outcome"] == "event"
    assert output["properties"]["body"] == "Yes please"
    assert output["properties"]["message_id"] == str(inbound.pk)
    assert inbound.in_reply_to.body == "Would you like a call back?"


# --- branch ----------------------------------------------------------------------------


def _routing_journey() -> Journey:
    return build_journey(
        step(
            "route",
            "branch",
            rules=[
                {
                    "when": [{"field": "contact.attributes.tier", "op": "eq", "value": "gold"}],
                    "goto": "vip",
                },
                {
                    "when": [{"field": "contact.tier", "op": "eq", "value": "silver"}],
                    "goto": "silver",
                },
                {"when": [{"field": "event.total", "op": "gte", "value": 100}], "goto": "big"},
                {
                    "when": [
                        {"field": "event.coupon", "op": "missing"},
                        {"field": "event.total", "op": "lt", "value": 10},
                    ],
                    "goto": "end",
                },
            ],
            default="standard",
        ),
        step("vip", "exit", reason="vip"),
        step("silver", "exit", reason="silver"),
        step("big", "exit", reason="big order"),
        step("standard", "exit", reason="standard"),
    )


@pytest.mark.parametrize(
    ("attributes", "properties", "path", "state", "reason"),
    [
        # Two rules hold: the first one listed wins.
        ({"tier": "gold"}, {"total": 500}, "vip", "exited", "vip"),
        ({"tier": "silver"}, {"total": 500}, "silver", "exited", "silver"),
        ({}, {"total": 150}, "big", "exited", "big order"),
        ({}, {"total": 100}, "big", "exited", "big order"),
        ({"tier": "bronze"}, {"total": 99}, "standard", "exited", "standard"),
        # Missing values match no comparison: the default is taken.
        ({}, {}, "standard", "exited", "standard"),
        # A string is not comparable with a number: no rule, no crash.
        ({}, {"total": "150"}, "standard", "exited", "standard"),
        # "end" completes the enrollment (both conditions of the rule must hold).
        ({}, {"total": 5}, "end", "completed", ""),
        ({}, {"total": 5, "coupon": "SPRING"}, "standard", "exited", "standard"),
    ],
)
def test_branch_rules(ingest, attributes, properties, path, state, reason):
    _routing_journey()
    contact = ContactFactory(attributes=attributes)

    ingest("order.completed", contact, **properties)

    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.exit_reason) == (state, reason)
    assert enrollment.context["steps"]["route"] == {"outcome": path}
    assert visited(enrollment) == ["route"] + ([] if path == "end" else [path])


def test_branch_on_an_earlier_steps_output(simulator, ingest):
    templates("hello", "email")
    build_journey(
        step("hello", "send", template="hello", channel="sms", fallback_channels=["email"]),
        step(
            "route",
            "branch",
            rules=[
                {
                    "when": [{"field": "steps.hello.channel", "op": "eq", "value": "sms"}],
                    "goto": "end",
                }
            ],
            default="by-email",
        ),
        step("by-email", "exit", reason="reached by email"),
    )
    contact = ContactFactory()

    ingest("order.completed", contact, order_id="3")

    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "reached by email")
    assert [m["channel"] for m in simulator.messages()] == ["email"]


def test_branch_without_a_match_or_default_goes_to_the_following_step(ingest):
    build_journey(
        step(
            "route",
            "branch",
            rules=[{"when": [{"field": "event.total", "op": "gt", "value": 0}], "goto": "end"}],
        ),
        step("next", "exit", reason="fell through"),
    )
    contact = ContactFactory()
    ingest("order.completed", contact)
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "fell through")
    assert enrollment.context["steps"]["route"] == {"outcome": "next"}


# --- survey ----------------------------------------------------------------------------


def _nps_journey(timeout: int = 86400) -> Journey:
    templates("nps", "sms", body="From 0 to 10, how likely are you to recommend us?")
    return build_journey(
        step("nps", "survey", template="nps", channel="sms", timeout_seconds=timeout),
        step(
            "route",
            "branch",
            rules=[
                {"when": [{"field": "steps.nps.score", "op": "gte", "value": 9}], "goto": "fans"},
                {"when": [{"field": "steps.nps.score", "op": "exists"}], "goto": "others"},
            ],
            default="no-score",
        ),
        step("fans", "exit", reason="promoter"),
        step("others", "exit", reason="not a promoter"),
        step("no-score", "exit", reason="no score"),
    )


@pytest.mark.parametrize(
    ("answer", "score", "category", "path"),
    [
        ("9", 9, "promoter", "promoter"),
        ("nine", 9, "promoter", "promoter"),
        ("10/10", 10, "promoter", "promoter"),
        ("I'd say a 7", 7, "passive", "not a promoter"),
        ("0", 0, "detractor", "not a promoter"),
    ],
)
def test_survey_answer_is_scored_and_branched_on(
    simulator, ingest, reply, answer, score, category, path
):
    _nps_journey()
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)
    [question] = simulator.messages()
    assert question["body"] == "From 0 to 10, how likely are you to recommend us?"
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.waiting_for) == ("waiting", "message.replied")

    inbound = reply(contact, answer)

    response = SurveyResponse.objects.get(contact=contact)
    assert (response.status, response.score, response.nps_category) == ("answered", score, category)
    assert (response.raw_answer, response.attempts) == (answer, 1)
    assert response.answer_id == inbound.pk
    assert response.question.provider_message_id == question["id"]
    assert (response.contact_id, response.step.key) == (contact.pk, "nps")
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("exited", path)
    assert enrollment.context["steps"]["nps"]["score"] == score
    assert len(simulator.messages(direction="outbound")) == 1
    [answered] = touchpoints(contact, "survey_answered")
    assert answered.data["score"] == score
    assert Event.objects.filter(name="survey.answered", contact=contact).count() == 1
    assert Event.objects.filter(name=f"survey.{category}", contact=contact).count() == 1


def test_survey_reasks_once_then_records_unparseable(simulator, ingest, reply):
    _nps_journey()
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)

    reply(contact, "meh")

    questions = simulator.messages(direction="outbound")
    assert [q["body"] for q in questions] == [questions[0]["body"]] * 2
    assert len({q["id"] for q in questions}) == 2
    [reasked] = touchpoints(contact, "survey_reasked")
    assert reasked.data["answer"] == "meh"
    assert not SurveyResponse.objects.filter(contact=contact).exists()
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.waiting_for) == ("waiting", "message.replied")

    second = reply(contact, "meh")

    assert len(simulator.messages(direction="outbound")) == 2  # not asked a third time
    response = SurveyResponse.objects.get(contact=contact)
    assert (response.status, response.score, response.attempts) == ("unparseable", None, 2)
    assert (response.raw_answer, response.answer_id) == ("meh", second.pk)
    assert response.question.provider_message_id == questions[1]["id"]
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "no score")
    assert len(touchpoints(contact, "survey_unparseable")) == 1
    assert not Event.objects.filter(name="survey.answered", contact=contact).exists()


def test_survey_understood_on_the_second_try(simulator, ingest, reply):
    _nps_journey()
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)

    reply(contact, "meh")
    reply(contact, "ok fine, eight")

    response = SurveyResponse.objects.get(contact=contact)
    assert (response.status, response.score, response.attempts) == ("answered", 8, 2)
    assert Enrollment.objects.get(contact=contact).exit_reason == "not a promoter"
    assert len(simulator.messages(direction="outbound")) == 2


def test_survey_never_answered_times_out(simulator, ingest, advance):
    _nps_journey(timeout=2 * 86400)
    contact = ContactFactory(phone="+14155552671")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        ingest("order.completed", contact)

    advance(start + dt.timedelta(days=2) - dt.timedelta(seconds=1))
    assert not SurveyResponse.objects.filter(contact=contact).exists()
    assert Enrollment.objects.get(contact=contact).state == "waiting"
    advance(start + dt.timedelta(days=2))

    response = SurveyResponse.objects.get(contact=contact)
    assert (response.status, response.score, response.raw_answer) == ("timed_out", None, "")
    assert response.answer is None
    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "no score")
    assert len(touchpoints(contact, "survey_timed_out")) == 1
    assert len(simulator.messages()) == 1  # the question only


@pytest.mark.parametrize(
    ("answer", "choice", "path"),
    [
        ("Price", "Price", "price"),
        ("quality!", "Quality", "other"),
        ("1", "Price", "price"),
        ("3", "Delivery speed", "other"),
        ("mostly the delivery speed", "Delivery speed", "other"),
    ],
)
def test_choice_survey(simulator, ingest, reply, answer, choice, path):
    templates("why", "sms", body="What mattered most? 1) Price 2) Quality 3) Delivery speed")
    build_journey(
        step(
            "why",
            "survey",
            template="why",
            channel="sms",
            kind="choice",
            choices=["Price", "Quality", "Delivery speed"],
        ),
        step(
            "route",
            "branch",
            rules=[
                {"when": [{"field": "steps.why.choice", "op": "eq", "value": "Price"}], "goto": "p"}
            ],
            default="o",
        ),
        step("p", "exit", reason="price"),
        step("o", "exit", reason="other"),
    )
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)

    reply(contact, answer)

    response = SurveyResponse.objects.get(contact=contact)
    assert (response.status, response.choice, response.score) == ("answered", choice, None)
    assert response.nps_category == ""
    assert Enrollment.objects.get(contact=contact).exit_reason == path


def test_choice_survey_out_of_range_number_is_reasked(simulator, ingest, reply):
    templates("why", "sms", body="1) Price 2) Quality")
    build_journey(
        step(
            "why",
            "survey",
            template="why",
            channel="sms",
            kind="choice",
            choices=["Price", "Quality"],
        )
    )
    contact = ContactFactory(phone="+14155552671")
    ingest("order.completed", contact)

    reply(contact, "4")

    assert len(simulator.messages(direction="outbound")) == 2
    assert not SurveyResponse.objects.filter(contact=contact).exists()
    assert len(touchpoints(contact, "survey_reasked")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9", 9),
        (" 0 ", 0),
        ("10", 10),
        ("nine", 9),
        ("NINE", 9),
        ("zero", 0),
        ("ten", 10),
        ("10/10", 10),
        ("9/10", 9),
        ("9 / 10", 9),
        ("I'd give you a 9!", 9),
        ("I'd give you an 8.", 8),
        ("score: 6, delivery was slow", 6),
        ("9 9", 9),
        ("9 out of 10", 9),
        ("7 or 8", None),
        ("7 or 8?", None),
        ("seven or eight", None),
        ("11", None),
        ("100", None),
        ("8.5", None),
        ("2024", None),
        ("meh", None),
        ("", None),
        (None, None),
        ("someone", None),
    ],
)
def test_parse_nps(text, expected):
    assert parse_nps(text) == expected


CHOICES = ["Price", "Quality", "Delivery speed"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Price", "Price"),
        ("price", "Price"),
        ("  QUALITY.  ", "Quality"),
        ("delivery speed!", "Delivery speed"),
        ("1", "Price"),
        (" 2 ", "Quality"),
        ("3", "Delivery speed"),
        ("0", None),
        ("4", None),
        ("the price, honestly", "Price"),
        ("price and quality", None),
        ("prices", None),
        ("", None),
        (None, None),
        ("something else", None),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text, CHOICES) == expected


# --- exit and a broken journey -----------------------------------------------------------


def test_exit_step_ends_the_enrollment(simulator, ingest):
    templates("never", "sms")
    build_journey(
        step("stop-here", "exit", reason="customer churned"),
        step("never", "send", template="never", channel="sms"),
    )
    contact = ContactFactory()

    ingest("order.completed", contact)

    enrollment = Enrollment.objects.get(contact=contact)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "customer churned")
    assert enrollment.ended_at is not None and enrollment.next_run_at is None
    assert visited(enrollment) == ["stop-here"]
    [exited] = touchpoints(contact, "journey_exited")
    assert exited.data["reason"] == "customer churned"
    assert exited.data["journey"] == enrollment.journey.slug
    assert simulator.messages() == []
    assert not touchpoints(contact, "journey_completed")


def test_exit_step_without_a_reason_names_the_step(ingest):
    build_journey(step("bye", "exit"))
    contact = ContactFactory()
    ingest("order.completed", contact)
    assert Enrollment.objects.get(contact=contact).exit_reason == "exit step bye"
    assert touchpoints(contact, "journey_exited")[0].data["reason"] == "exit step bye"


def test_a_step_pointing_to_an_unknown_key_fails_and_rolls_back_its_work(simulator, ingest):
    templates("thanks", "sms")
    build_journey(
        step("thank-you", "send", "nowhere", template="thanks", channel="sms"),
        step("after", "exit"),
    )
    contact = ContactFactory()

    ingest("order.completed", contact, order_id="1")

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "failed"
    assert "nowhere" in enrollment.exit_reason
    assert enrollment.ended_at is not None and enrollment.next_run_at is None
    [failed] = touchpoints(contact, "journey_failed")
    assert "nowhere" in failed.data["reason"]
    # Nothing of the step survived: no message (and nothing sent), no visit, no timeline entry.
    assert simulator.messages() == [] and simulator.rejected() == []
    assert not Message.objects.filter(contact=contact).exists()
    assert not JourneyMessage.objects.filter(enrollment__contact=contact).exists()
    assert not StepVisit.objects.filter(enrollment__contact=contact).exists()
    assert kinds(contact) == ["event", "journey_entered", "journey_failed"]
    assert enrollment.context.get("steps") == {}


def test_a_branch_to_an_unknown_key_fails(ingest):
    build_journey(step("route", "branch", rules=[], default="missing-step"))
    contact = ContactFactory()
    ingest("order.completed", contact)
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "failed"
    assert "missing-step" in enrollment.exit_reason
    assert not StepVisit.objects.filter(enrollment__contact=contact).exists()


def test_enrollment_started_directly_and_advanced(simulator):
    templates("thanks", "sms")
    journey = build_journey(step("thank-you", "send", template="thanks", channel="sms"))
    contact = ContactFactory(first_name="Grace")
    now = timezone.now()

    enrollment = enrollment_start(journey=journey, contact=contact, event=None, now=now)
    assert engine.enrollment_advance(enrollment_id=enrollment.pk, now=now) == "completed"

    # No on-commit capture here: the message is created but delivery waits for the commit.
    message = Message.objects.get(contact=contact)
    assert (message.status, message.body) == ("queued", "Hi Grace, thanks for order !")
    assert engine.enrollment_advance(enrollment_id=enrollment.pk, now=now) == "skipped"
    assert Message.objects.filter(contact=contact).count() == 1
