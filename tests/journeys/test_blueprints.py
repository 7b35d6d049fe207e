"""The built-in journeys end to end: API event → engine → real SDKs → simulator,
replies through the signed inbound webhook, time moved with time-machine."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from journeys.models import Enrollment, Event, Journey, SurveyResponse
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db

ADA = {
    "external_id": "ada",
    "first_name": "Ada",
    "phone": "+14155552671",
    "email": "ada@example.com",
    "timezone": "Europe/London",
}


def test_install_is_idempotent(blueprints):
    from journeys.blueprints import install_blueprints

    assert install_blueprints(activate=True) == []
    assert set(Journey.objects.values_list("slug", "status")) == {
        ("post-purchase", "active"),
        ("onboarding", "active"),
        ("survey", "active"),
        ("abandoned-cart", "active"),
        ("welcome-offer", "active"),
    }


def test_every_blueprint_passes_the_checks_activation_runs(blueprints):
    from journeys.validation import journey_problems

    problems = {j.slug: journey_problems(j) for j in Journey.objects.all()}
    assert problems == {slug: [] for slug in problems}
    offer = Journey.objects.get(slug="welcome-offer")
    assert (offer.holdout_percent, offer.conversion_events, offer.revenue_property) == (
        10,
        ["order.completed"],
        "total",
    )
    assert offer.steps.get(key="offer-split").kind == "split"


def test_post_purchase_thanks_then_nps_then_review(
    blueprints, simulator, fire, reply_sms, run_due, api
):
    start = timezone.now()
    result = fire("order.completed", ADA, {"order_id": "1001"})
    assert [e["journey"] for e in result["enrolled"]] == ["post-purchase"]
    [thanks] = simulator.messages()
    assert thanks["channel"] == "sms" and "#1001" in thanks["body"]
    enrollment = Enrollment.objects.get()
    assert enrollment.state == "waiting" and enrollment.current_step.key == "wait-3-days"

    with time_machine.travel(start + dt.timedelta(days=2, hours=23), tick=False):
        assert run_due() == 0  # not yet
    with time_machine.travel(start + dt.timedelta(days=3, minutes=1), tick=True):
        assert run_due() == 1
        question = simulator.messages()[-1]
        assert "0 to 10" in question["body"]
        reply_sms("+14155552671", "I'd give you a 9!")

    response = SurveyResponse.objects.get()
    assert (response.score, response.nps_category, response.status) == (9, "promoter", "answered")
    review = simulator.messages()[-1]
    assert "review" in review["body"]
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"
    assert Event.objects.filter(name="survey.promoter").exists()

    stats = api.get("/api/v1/journeys/post-purchase/stats/").json()
    assert stats["nps"]["promoters"] == 1 and stats["nps"]["score"] == 100.0
    assert stats["enrollments"]["completed"] == 1
    by_key = {s["key"]: s for s in stats["steps"]}
    assert by_key["thank-you"]["sent"] == 1 and by_key["review"]["sent"] == 1
    assert by_key["nps"]["replied"] == 1
    assert by_key["apology"]["entered"] == 0
    kinds = list(
        Touchpoint.objects.filter(contact__external_id="ada")
        .order_by("occurred_at", "id")
        .values_list("kind", flat=True)
    )
    for expected in (
        "event",
        "journey_entered",
        "step_send",
        "sent",
        "step_wait",
        "step_survey",
        "replied",
        "survey_answered",
        "step_branch",
        "journey_completed",
    ):
        assert expected in kinds, expected


def test_post_purchase_detractor_gets_an_apology_email(
    blueprints, simulator, fire, reply_sms, run_due
):
    start = timezone.now()
    fire("order.completed", ADA, {"order_id": "7"})
    with time_machine.travel(start + dt.timedelta(days=3, minutes=1), tick=True):
        run_due()
        reply_sms("+14155552671", "3")
    assert simulator.messages()[-1]["channel"] == "email"
    assert simulator.messages()[-1]["subject"] == "We're sorry"
    assert Event.objects.filter(name="survey.detractor").count() == 1


def test_onboarding_stops_at_the_goal_event(blueprints, simulator, fire, run_due):
    start = timezone.now()
    fire("user.signed_up", {**ADA, "consent": {"sms": "subscribed"}})
    [welcome] = simulator.messages()
    assert welcome["channel"] == "email" and welcome["subject"].startswith("Welcome")
    with time_machine.travel(start + dt.timedelta(hours=12), tick=True):
        result = fire("onboarding.completed", {"external_id": "ada"})
        assert result["converted"] == [Enrollment.objects.get().pk]
    with time_machine.travel(start + dt.timedelta(days=5), tick=True):
        assert run_due() == 0
    assert len(simulator.messages()) == 1  # no tips, no nudge
    assert Enrollment.objects.get().state == "converted"
    assert Touchpoint.objects.filter(kind="converted").count() == 1


def test_onboarding_full_series_and_once_policy(blueprints, simulator, fire, run_due):
    start = timezone.now().replace(hour=12, minute=0)  # outside quiet hours in London
    with time_machine.travel(start, tick=True):
        fire("user.signed_up", {**ADA, "consent": {"sms": "subscribed"}})
    with time_machine.travel(start + dt.timedelta(days=1, minutes=1), tick=True):
        run_due()
    with time_machine.travel(start + dt.timedelta(days=4, minutes=2), tick=True):
        run_due()
    assert [m["channel"] for m in simulator.messages()] == ["email", "sms", "sms"]
    assert Enrollment.objects.get().state == "completed"
    again = fire("user.signed_up", {"external_id": "ada"})
    assert again["enrolled"] == []  # entry policy: once


def test_survey_blueprint_on_the_requested_channel(blueprints, simulator, fire):
    fire("survey.requested", ADA, {"channel": "email"})
    [question] = simulator.messages()
    assert question["channel"] == "email"
    assert Enrollment.objects.get().waiting_for == "message.replied"


def test_fast_forward_skips_the_wait_for_demos(
    blueprints, simulator, fire, django_capture_on_commit_callbacks
):
    from journeys.services import enrollments_fast_forward

    fire("order.completed", ADA, {"order_id": "5"})
    assert len(simulator.messages()) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert enrollments_fast_forward(queryset=Enrollment.objects.all()) == 1
    assert "0 to 10" in simulator.messages()[-1]["body"]
    assert Enrollment.objects.get().current_step.key == "nps"
