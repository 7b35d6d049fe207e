"""A survey answer that is the journey's own goal converts the enrollment that asked it, and
the engine does not then overwrite CONVERTED with the steps after the survey."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from channels_app.events import InboundEvent
from channels_app.keywords import classify_keyword
from journeys import engine
from journeys.models import Enrollment, Journey, Step, SurveyResponse
from journeys.services import event_ingest
from messaging.models import Touchpoint
from messaging.provider_events import inbound_message_apply
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def _journey(goal: str) -> Journey:
    TemplateFactory(slug="nps", channel="sms", body="From 0 to 10?")
    journey = Journey.objects.create(
        name="NPS",
        slug="nps-goal",
        status="active",
        trigger_event="order.completed",
        goal_event=goal,
    )
    for position, (key, kind, config) in enumerate(
        [
            ("nps", "survey", {"template": "nps", "channel": "sms"}),
            ("after", "exit", {"reason": "after the survey"}),
        ]
    ):
        Step.objects.create(journey=journey, position=position, key=key, kind=kind, config=config)
    return journey


def _asked(simulator, django_capture_on_commit_callbacks):
    contact = ContactFactory(phone="+14155552671")
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=contact)
    assert len(simulator.messages(direction="outbound")) == 1
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.state == "waiting"
    return contact, enrollment


def _assert_converted(contact, enrollment, goal: str) -> None:
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("converted", f"goal event {goal}")
    assert enrollment.ended_at is not None
    assert SurveyResponse.objects.get(contact=contact).score == 9
    assert enrollment.context["steps"]["nps"]["score"] == 9  # the run's outputs are kept
    kinds = list(Touchpoint.objects.filter(contact=contact).values_list("kind", flat=True))
    assert kinds.count("converted") == 1
    assert "journey_exited" not in kinds
    assert not enrollment.visits.filter(step__key="after").exists()


@pytest.mark.parametrize("goal", ["survey.answered", "survey.promoter"])
def test_an_answer_that_is_the_goal_converts_the_enrollment_that_asked(
    simulator, django_capture_on_commit_callbacks, goal
):
    """Through the inbound webhook path: the reply wakes the enrollment and the worker's
    batch advance (eager here) records the answer, whose event converts it."""
    _journey(goal)
    contact, enrollment = _asked(simulator, django_capture_on_commit_callbacks)
    inbound = InboundEvent(
        provider="twilio",
        channel="sms",
        timestamp=timezone.now(),
        event_id=f"SM{uuid.uuid4().hex}",
        sender=contact.phone,
        recipient=settings.TWILIO_SMS_FROM,
        body="9",
        full_body="9",
        keyword=classify_keyword("9"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert inbound_message_apply(event=inbound) is not None

    _assert_converted(contact, enrollment, goal)


def test_the_one_by_one_advance_keeps_the_conversion_too(
    simulator, django_capture_on_commit_callbacks
):
    _journey("survey.answered")
    contact, enrollment = _asked(simulator, django_capture_on_commit_callbacks)
    event_ingest(name="message.replied", contact=contact, properties={"body": "9"})
    enrollment.refresh_from_db()
    assert enrollment.wake_event is not None

    with django_capture_on_commit_callbacks(execute=True):
        outcome = engine.enrollment_advance(enrollment_id=enrollment.pk)

    assert outcome == "converted"
    _assert_converted(contact, enrollment, "survey.answered")
