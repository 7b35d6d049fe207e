"""The staff inbox lists only what waits for a human: a reply the survey took as its answer,
and a STOP/START/HELP keyword, are dealt with and do not wait there."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from channels_app.events import InboundEvent
from channels_app.keywords import classify_keyword
from journeys.models import Journey, Step, SurveyResponse
from journeys.services import event_ingest
from messaging.models import Conversation
from messaging.provider_events import inbound_message_apply
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply(django_capture_on_commit_callbacks):
    def _reply(contact, body: str) -> None:
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
            assert inbound_message_apply(event=event) is not None

    return _reply


@pytest.fixture
def asked(simulator, django_capture_on_commit_callbacks):
    """A contact asked the NPS question, waiting for the answer."""
    TemplateFactory(slug="nps", channel="sms", body="From 0 to 10, how likely...?")
    journey = Journey.objects.create(
        name="NPS", slug="nps", status="active", trigger_event="order.completed"
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="nps",
        kind="survey",
        config={"template": "nps", "channel": "sms"},
    )
    contact = ContactFactory(phone="+14155552671")
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=contact)
    assert len(simulator.messages(direction="outbound")) == 1
    return contact


def waiting(contact) -> bool:
    return (
        Conversation.objects.filter(contact=contact)
        .exclude(status=Conversation.Status.RESOLVED)
        .exists()
    )


def test_a_survey_answer_does_not_wait_in_the_inbox(asked, reply, admin_client):
    reply(asked, "9")

    assert SurveyResponse.objects.get(contact=asked).score == 9
    assert not waiting(asked)
    page = admin_client.get(reverse("touchline-inbox"))
    assert page.status_code == 200
    assert str(asked) not in page.content.decode()


def test_what_the_contact_writes_after_the_survey_waits_for_a_human(asked, reply):
    reply(asked, "9")
    reply(asked, "Also, my order is late")
    assert waiting(asked)


def test_a_reply_the_survey_did_not_understand_still_waits(asked, reply):
    reply(asked, "meh, ask me later")  # not an answer: re-asked
    assert waiting(asked)
    reply(asked, "8")  # the answer: but the first reply still waits for a human
    assert SurveyResponse.objects.get(contact=asked).score == 8
    assert waiting(asked)


@pytest.mark.parametrize("word", ["STOP", "START", "UNSTOP", "HELP"])
def test_a_keyword_does_not_wait_in_the_inbox(reply, word):
    contact = ContactFactory(phone="+14155552672")
    reply(contact, word)
    assert not waiting(contact)
