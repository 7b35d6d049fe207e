"""Conditions journeys registers: journey membership and survey answers."""

from __future__ import annotations

import datetime as dt

import pytest

from journeys.models import SurveyResponse
from tests.factories import ContactFactory

from .conftest import NOW, enroll, journey
from .test_conditions import matching

pytestmark = pytest.mark.django_db


def test_journey_membership_states_and_windows():
    ana, ben, cy, dee, eve = (
        ContactFactory(external_id=n) for n in ("ana", "ben", "cy", "dee", "eve")
    )
    onboarding = journey("onboarding")
    v2 = journey("onboarding", version=2, status="draft")  # a slug names every version
    other = journey("other")
    enroll(onboarding, ana, "waiting", days_ago=2)
    enroll(v2, ben, "active", days_ago=40)
    enroll(onboarding, cy, "converted", days_ago=10, ended=5)
    enroll(onboarding, dee, "completed", days_ago=60, ended=50)
    enroll(other, eve, "waiting")
    assert matching({"journey": "onboarding"}) == {"ana", "ben"}  # default: "in"
    assert matching({"journey": "onboarding", "state": "in", "within_days": 7}) == {"ana"}
    assert matching({"journey": "onboarding", "state": "converted"}) == {"cy"}
    assert matching({"journey": "onboarding", "state": ["completed", "converted"]}) == {
        "cy",
        "dee",
    }
    # ended states count from when they ended
    assert matching({"journey": "onboarding", "state": "completed", "within_days": 30}) == set()
    assert matching({"journey": "onboarding", "state": "converted", "within_days": 7}) == {"cy"}
    assert matching({"journey": "onboarding", "state": "entered"}) == {"ana", "ben", "cy", "dee"}
    assert matching({"not": {"journey": "onboarding", "state": "entered"}}) == {"eve"}


def answer(j, contact, *, days_ago=1, status="answered", score=None, choice="", nps=""):
    enrollment = enroll(j, contact, "completed")
    return SurveyResponse.objects.create(
        journey=j,
        step=j.steps.get(key="q"),
        enrollment=enrollment,
        contact=contact,
        status=status,
        score=score,
        choice=choice,
        nps_category=nps,
        answered_at=NOW - dt.timedelta(days=days_ago),
    )


def test_survey_answers_nps_score_choice_and_window():
    ana, ben, cy, dee, eve = (
        ContactFactory(external_id=n) for n in ("ana", "ben", "cy", "dee", "eve")
    )
    nps = journey("nps", ("q", "survey"))
    poll = journey("poll", ("q", "survey"))
    answer(nps, ana, score=10, nps="promoter")
    answer(nps, ben, score=7, nps="passive", days_ago=100)
    answer(nps, cy, score=2, nps="detractor")
    answer(nps, dee, status="timed_out")
    answer(poll, eve, choice="yes")
    answer(poll, dee, choice="maybe", status="unparseable")
    assert matching({"survey": "nps"}) == {"ana", "ben", "cy"}  # answered (understood)
    assert matching({"survey": "nps", "nps": "promoter"}) == {"ana"}
    assert matching({"survey": "nps", "nps": ["passive", "detractor"]}) == {"ben", "cy"}
    assert matching({"survey": "nps", "nps": "passive", "within_days": 90}) == set()
    assert matching({"survey": "nps", "score": {"gte": 7, "lte": 8}}) == {"ben"}
    assert matching({"survey": "nps", "score": {"lt": 7}}) == {"cy"}
    assert matching({"survey": "nps", "status": "timed_out"}) == {"dee"}
    assert matching({"survey": "poll", "choice": "yes"}) == {"eve"}
    assert matching({"survey": "poll", "choice": ["no", "maybe"]}) == set()
    assert matching({"survey": "*", "step": "q", "within_days": 30}) == {"ana", "cy", "eve"}
    # "has not answered the survey"
    assert matching({"not": {"survey": "nps"}}) == {"dee", "eve"}
