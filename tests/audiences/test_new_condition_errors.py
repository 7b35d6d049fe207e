"""Engagement, journey, survey and keyed event conditions: 400s at their JSON path through
the API, and a recompute over all of them that stays set-based."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.services import segment_count, segment_recompute
from journeys.models import Journey, JourneyMessage
from messaging.models import Contact
from tests.factories import ContactFactory, TemplateFactory

from .conftest import NOW, enroll, event, journey, message, segment
from .test_api import _errors, create

pytestmark = pytest.mark.django_db
FOLLOW = {"event": "order.completed", "match": {"cart_id": "trigger.cart_id"}}


@pytest.fixture
def known():
    TemplateFactory(slug="welcome")
    journey("nps", ("q", "survey"))


@pytest.mark.parametrize(
    ("definition", "attr"),
    [
        ({"engagement": "liked"}, "definition.engagement"),
        ({"all": [{"engagement": "liked"}]}, "definition.all[0].engagement"),
        ({"engagement": "opened", "template": "nope"}, "definition.template"),
        ({"engagement": "opened", "template": 5}, "definition.template"),
        ({"engagement": "opened", "template": "welcome", "journey": "nps"}, "definition.journey"),
        ({"engagement": "opened", "journey": "nope"}, "definition.journey"),
        ({"engagement": "opened", "channel": "fax"}, "definition.channel"),
        ({"engagement": "opened", "count": {"gte": -1}}, "definition.count"),
        ({"engagement": "opened", "within_days": 0}, "definition.within_days"),
        ({"engagement": "opened", "colour": "red"}, "definition.colour"),
        ({"journey": "nope"}, "definition.journey"),
        ({"journey": "nps", "state": "asleep"}, "definition.state"),
        ({"journey": "nps", "state": []}, "definition.state"),
        ({"journey": "nps", "until": "later"}, "definition.until"),
        ({"survey": "nope"}, "definition.survey"),
        ({"survey": "nps", "nps": "fan"}, "definition.nps"),
        ({"survey": "nps", "score": {"about": 5}}, "definition.score"),
        ({"survey": "nps", "score": {"gte": 1.5}}, "definition.score"),
        ({"survey": "nps", "choice": []}, "definition.choice"),
        ({"survey": "nps", "status": "lost"}, "definition.status"),
        ({"survey": "*", "step": ""}, "definition.step"),
        (
            {"event": "cart.updated", "followed_by": FOLLOW, "not_followed_by": FOLLOW},
            "definition.not_followed_by",
        ),
        ({"event": "cart.updated", "followed_by": "order"}, "definition.followed_by"),
        (
            {"event": "c", "followed_by": {**FOLLOW, "match": {"cart_id": "trigger.a b"}}},
            "definition.followed_by.match.cart_id",
        ),
        (
            {"event": "c", "followed_by": {**FOLLOW, "match": {"a__b": 1}}},
            "definition.followed_by.match.a__b",
        ),
        ({"event": "c", "followed_by": {**FOLLOW, "match": {}}}, "definition.followed_by.match"),
        ({"event": "c", "followed_by": {"within_hours": 2}}, "definition.followed_by.event"),
        (
            {"event": "c", "not_followed_by": {**FOLLOW, "within_hours": 0}},
            "definition.not_followed_by.within_hours",
        ),
        (
            {"event": "c", "not_followed_by": {**FOLLOW, "within_hours": 1, "within_days": 1}},
            "definition.not_followed_by.within_days",
        ),
        (
            {"event": "c", "not_followed_by": {**FOLLOW, "where": [{"property": "t"}]}},
            "definition.not_followed_by.where[0].op",
        ),
        ({"event": "c", "not_followed_by": {**FOLLOW, "x": 1}}, "definition.not_followed_by.x"),
    ],
)
def test_each_bad_input_is_a_400_at_its_path(api, known, definition, attr):
    response = create(api, definition=definition)
    assert response.status_code == 400, response.json()
    assert attr in _errors(response), response.json()


def test_good_definitions_are_accepted(api, known):
    for n, definition in enumerate(
        [
            {"engagement": "clicked", "template": "welcome", "within_days": 30},
            {"engagement": "replied", "journey": "nps", "count": {"gte": 2}},
            {"journey": "nps", "state": ["completed", "converted"], "within_days": 30},
            {"survey": "nps", "nps": "detractor", "score": {"lte": 4}},
            {"event": "cart.updated", "not_followed_by": {**FOLLOW, "within_hours": 24}},
        ]
    ):
        response = create(api, slug=f"s{n}", definition=definition)
        assert response.status_code == 201, response.json()


EVERYTHING = {
    "any": [
        {"engagement": "delivered", "journey": "promo", "within_days": 30},
        {"engagement": "opened", "template": "welcome", "count": {"gte": 2}},
        {"journey": "promo", "state": "in"},
        {"survey": "*", "nps": "promoter"},
        {
            "event": "cart.updated",
            "within_days": 7,
            "not_followed_by": {**FOLLOW, "within_hours": 24},
        },
    ]
}


def _recompute_queries(n: int) -> tuple[int, int]:
    Contact.objects.all().delete()
    Journey.objects.filter(slug="promo").delete()
    promo = journey("promo")
    for i in range(n):
        contact = ContactFactory()
        enrollment = enroll(promo, contact, "waiting" if i % 3 else "completed")
        msg = message(contact, "delivered" if i % 2 else "failed")
        JourneyMessage.objects.create(
            message=msg, enrollment=enrollment, step=promo.steps.get(), journey=promo
        )
        event(contact, "cart.updated", days_ago=2, cart_id=f"c{i}")
    seg = segment(f"everything-{n}", EVERYTHING)
    with CaptureQueriesContext(connection) as captured:
        seg = segment_recompute(segment=seg, now=NOW)
    assert segment_count(segment=seg, now=NOW) == seg.member_count == n  # every cart abandoned
    return len(captured), seg.member_count


def test_recompute_over_the_new_conditions_is_set_based(known):
    TemplateFactory(slug="welcome", channel="email", subject="Hi")
    small, _ = _recompute_queries(5)
    large, _ = _recompute_queries(60)
    assert small == large
