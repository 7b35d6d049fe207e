"""Journey builder: validation before activation, versions, dry run, inbox pause, admin pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from journeys import engine
from journeys.blueprints import install_blueprints
from journeys.dryrun import dry_run
from journeys.forms import StepForm, parse_duration
from journeys.lifecycle import journey_activate, journey_copy
from journeys.models import Enrollment, Journey, Step
from journeys.services import enrollment_start, event_ingest
from journeys.validation import journey_problems
from messaging.conversations import conversation_open, conversation_resolve
from messaging.models import Conversation, Message, Touchpoint
from messaging.provider_events import inbound_message_apply
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def draft(steps, **kw):
    journey = Journey.objects.create(
        name="Draft", slug=kw.pop("slug", "draft"), trigger_event="t.go", **kw
    )
    for position, step in enumerate(steps):
        Step.objects.create(journey=journey, position=position, **step)
    return journey


def test_validation_lists_every_problem():
    TemplateFactory(slug="hi", channel="sms")
    journey = draft(
        [
            {
                "key": "a",
                "kind": "send",
                "config": {"channel": "sms", "template": "hi", "fallback_channels": ["email"]},
            },
            {"key": "b", "kind": "wait", "config": {"duration_seconds": 0}},
            {
                "key": "c",
                "kind": "branch",
                "config": {"rules": [{"when": [], "goto": "nowhere"}], "default": "end"},
            },
            {"key": "d", "kind": "exit", "config": {}},
        ]
    )
    problems = journey_problems(journey)
    assert any("no version for email" in p for p in problems)
    assert any("positive duration" in p for p in problems)
    assert any("“nowhere”" in p for p in problems)
    assert any("“d” can never be reached" in p for p in problems)
    assert journey_activate(journey=journey) == problems
    journey.refresh_from_db()
    assert journey.status == "draft"


def test_a_valid_journey_activates_and_blueprints_are_valid():
    install_blueprints()
    for journey in Journey.objects.all():
        assert journey_problems(journey) == [], journey.slug


def test_new_version_runs_beside_the_old_one_until_its_enrollments_finish():
    TemplateFactory(slug="hi", channel="sms", body="v1")
    v1 = draft(
        [
            {
                "key": "hello",
                "kind": "send",
                "config": {"channel": "sms", "template": "hi", "fallback_channels": []},
            },
            {"key": "pause", "kind": "wait", "config": {"duration_seconds": 60}},
        ],
        slug="promo",
    )
    assert journey_activate(journey=v1) == []
    contact = ContactFactory()
    old = enrollment_start(journey=v1, contact=contact, event=None, now=timezone.now())
    engine.enrollment_advance(enrollment_id=old.pk)

    v2 = journey_copy(journey=v1)
    assert (v2.slug, v2.version, v2.status) == ("promo", 2, "draft")
    Step.objects.filter(journey=v2, key="pause").update(config={"duration_seconds": 120})
    assert journey_activate(journey=v2) == []
    v1.refresh_from_db()
    assert v1.status == "archived"
    # The old enrollment keeps its version's steps; new events enter v2.
    old.refresh_from_db()
    assert old.journey_id == v1.pk and old.current_step.journey_id == v1.pk
    event_ingest(name="t.go", contact=ContactFactory())
    assert Enrollment.objects.exclude(pk=old.pk).get().journey_id == v2.pk
    from datetime import timedelta

    assert (
        engine.enrollment_advance(enrollment_id=old.pk, now=timezone.now() + timedelta(minutes=2))
        == "completed"
    )


def test_step_form_builds_config_per_kind():
    form = StepForm(data={"position": 0, "key": "w", "kind": "wait", "duration": "1d 6h"})
    assert form.is_valid(), form.errors
    assert form.instance.config == {"duration_seconds": 108000}
    bad = StepForm(data={"position": 0, "key": "b", "kind": "branch", "rules": "[{"})
    assert not bad.is_valid() and "rules" in bad.errors
    assert parse_duration("90m") == 5400


def test_dry_run_uses_the_engine_and_leaves_nothing_behind(simulator):
    install_blueprints(activate=True)
    contact = ContactFactory(phone="+14155552671", timezone="Europe/London")
    journey = Journey.objects.get(slug="post-purchase")
    before = (Message.objects.count(), Touchpoint.objects.count(), Enrollment.objects.count())
    result = dry_run(
        journey=journey, contact=contact, properties={"order_id": "9"}, replies={"nps": "10"}
    )
    whats = [(line.step, line.what) for line in result.lines]
    assert ("thank-you", "sends SMS") in whats
    assert ("nps", "sends SMS") in whats
    assert ("review", "sends SMS") in whats
    assert ("nps", "survey answered") in whats
    assert result.outcome == "Completed"
    nps_line = next(line for line in result.lines if line.step == "nps" and "sends" in line.what)
    assert nps_line.offset.startswith("+3d")
    assert (
        Message.objects.count(),
        Touchpoint.objects.count(),
        Enrollment.objects.count(),
    ) == before
    assert simulator.messages() == []


def test_dry_run_shows_why_not(simulator):
    install_blueprints(activate=True)
    contact = ContactFactory(phone="", email="", whatsapp="")
    result = dry_run(journey=Journey.objects.get(slug="post-purchase"), contact=contact)
    assert any(line.what == "send skipped" for line in result.lines)


def test_an_open_conversation_pauses_marketing_journeys_until_resolved(
    simulator, django_capture_on_commit_callbacks
):
    install_blueprints(activate=True)
    contact = ContactFactory(external_id="c1", phone="+14155552671")
    from messaging.services import consent_set

    consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="user.signed_up", contact=contact)
    onboarding = Enrollment.objects.get(journey__slug="onboarding")
    from channels_app.events import InboundEvent

    with django_capture_on_commit_callbacks(execute=True):
        inbound_message_apply(
            event=InboundEvent(
                provider="twilio",
                channel="sms",
                timestamp=timezone.now(),
                event_id="SMq1",
                sender=contact.phone,
                recipient="+15005550006",
                body="I have a question",
            )
        )
    thread = Conversation.objects.get(contact=contact)
    assert thread.status == "needs_reply"
    staff = User.objects.create_user("agent", is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_open(conversation=thread, user_id=staff.pk)
    from datetime import timedelta

    # Midday the next day: after the one-day wait, outside quiet hours (contact in London).
    later = (timezone.now() + timedelta(days=2)).replace(hour=12)
    assert engine.enrollment_advance(enrollment_id=onboarding.pk, now=later) == "paused"
    onboarding.refresh_from_db()
    assert onboarding.waiting_for == "conversation.resolved"
    assert Touchpoint.objects.filter(kind="journey_paused").count() == 1
    sent_before = len(simulator.messages())
    with django_capture_on_commit_callbacks(execute=True):
        conversation_resolve(conversation=thread, user_id=staff.pk)
    onboarding.refresh_from_db()
    assert onboarding.wake_event is not None and onboarding.wake_event.name == (
        "conversation.resolved"
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.enrollment_advance(enrollment_id=onboarding.pk, now=later) == "waiting"
    onboarding.refresh_from_db()
    assert onboarding.current_step.key == "wait-3-days"
    assert len(simulator.messages()) == sent_before + 1  # the tips went out after resolving


def test_staff_groups_exist():
    names = set(Group.objects.values_list("name", flat=True))
    assert {"Marketing", "Support", "Viewer"} <= names
    support = Group.objects.get(name="Support")
    assert support.permissions.filter(codename="use_inbox").exists()
    assert (
        not Group.objects.get(name="Viewer")
        .permissions.filter(codename__startswith="change_")
        .exists()
    )


def test_admin_pages_render(admin_client, simulator):
    install_blueprints(activate=True)
    contact = ContactFactory()
    journey = Journey.objects.get(slug="post-purchase")
    urls = [
        reverse("admin:journeys_journey_change", args=[journey.pk]),
        reverse("admin:journeys_journey_dryrun", args=[journey.pk]),
        reverse("admin:messaging_contact_change", args=[contact.pk]),
        reverse("touchline-timeline", args=[contact.pk]),
        reverse("touchline-inbox"),
        reverse("admin:journeys_journey_add"),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
    response = admin_client.post(
        reverse("admin:journeys_journey_dryrun", args=[journey.pk]),
        {"contact": contact.pk, "properties": '{"order_id": "1"}', "replies": '{"nps": "3"}'},
    )
    assert response.status_code == 200
    assert b"sorry" in response.content.lower() or b"apology" in response.content.lower()


def test_inbox_reply_goes_through_the_pipeline(
    admin_client, simulator, django_capture_on_commit_callbacks
):
    contact = ContactFactory(phone="+14155552699")
    from channels_app.events import InboundEvent

    inbound_message_apply(
        event=InboundEvent(
            provider="twilio",
            channel="sms",
            timestamp=timezone.now(),
            event_id="SMq2",
            sender=contact.phone,
            recipient="+15005550006",
            body="Where is my order?",
        )
    )
    page = admin_client.get(reverse("touchline-inbox"))
    assert b"Where is my order?" in page.content
    url = reverse("touchline-conversation", args=[contact.pk])
    assert admin_client.get(url).status_code == 200
    assert Conversation.objects.get(contact=contact).status == "open"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"channel": "sms", "body": "It ships today."})
    assert response.status_code == 302
    assert simulator.messages()[-1]["body"] == "It ships today."
    reply = Message.objects.get(source="inbox")
    assert Touchpoint.objects.get(message=reply, kind="queued").actor is not None
    admin_client.post(reverse("touchline-resolve", args=[contact.pk]))
    assert Conversation.objects.get(contact=contact).status == "resolved"
    assert b"Where is my order?" not in admin_client.get(reverse("touchline-inbox")).content


def test_inbox_needs_the_permission(client):
    User.objects.create_user("viewer", password="pw-123456", is_staff=True)
    client.login(username="viewer", password="pw-123456")
    assert client.get(reverse("touchline-inbox")).status_code == 403


def test_timeline_page_filters_and_pages(admin_client):
    contact = ContactFactory()
    from messaging.services import touchpoint_record

    for i in range(60):
        touchpoint_record(
            contact_id=contact.pk,
            kind="event" if i % 2 else "sent",
            channel="" if i % 2 else "sms",
            data={"i": i},
        )
    url = reverse("touchline-timeline", args=[contact.pk])
    first = admin_client.get(url)
    assert first.context["next_cursor"]
    assert len(first.context["rows"]) == 50
    second = admin_client.get(url, {"before": first.context["next_cursor"]})
    assert len(second.context["rows"]) == 10
    only_sms = admin_client.get(url, {"channel": "sms"})
    assert {tp.channel for tp in only_sms.context["rows"]} == {"sms"}


def test_touchpoint_list_filters_by_journey(
    admin_client, simulator, django_capture_on_commit_callbacks
):
    install_blueprints(activate=True)
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=contact, properties={"order_id": "1"})
    url = reverse("admin:messaging_touchpoint_changelist")
    page = admin_client.get(url, {"journey": "post-purchase"})
    assert page.status_code == 200
    kinds = {tp.kind for tp in page.context["cl"].result_list}
    assert "journey_entered" in kinds and "event" not in kinds
