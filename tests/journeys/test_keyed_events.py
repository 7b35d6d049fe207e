"""Keyed events: waits, goals and entry keyed by a trigger property (the abandoned cart)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from journeys.models import Enrollment, Journey, Step
from journeys.validation import journey_problems

pytestmark = pytest.mark.django_db

ADA = {
    "external_id": "ada",
    "first_name": "Ada",
    "phone": "+14155552671",
    "email": "ada@example.com",
    "timezone": "Europe/London",
    "consent": {"sms": "subscribed"},
}
CART_A = {"cart_id": "A", "items": [{"name": "Red shoes"}, {"name": "Blue socks"}]}
CART_B = {"cart_id": "B", "items": [{"name": "Green hat"}]}


@pytest.fixture
def blueprints(blueprints):
    # order.completed also starts post-purchase: keep the simulator to the cart's messages.
    Journey.objects.filter(slug="post-purchase").update(status="archived")


def _by_cart(cart_id):
    return Enrollment.objects.get(trigger_event__properties__cart_id=cart_id)


def test_two_carts_one_ordered_one_abandoned(blueprints, simulator, fire, run_due):
    start = timezone.now().replace(hour=12, minute=0)  # outside quiet hours in London
    with time_machine.travel(start, tick=True):
        entered_a = fire("cart.updated", ADA, CART_A)["enrolled"]
        entered_b = fire("cart.updated", {"external_id": "ada"}, CART_B)["enrolled"]
        assert [e["journey"] for e in entered_a + entered_b] == ["abandoned-cart"] * 2
        assert simulator.messages() == []
    with time_machine.travel(start + dt.timedelta(minutes=20), tick=True):
        # An order for cart B neither wakes nor converts cart A.
        result = fire("order.completed", {"external_id": "ada"}, {"cart_id": "B"})
        assert result["converted"] == [_by_cart("B").pk]
        assert result["resumed"] == []
    assert _by_cart("B").state == "converted"
    assert _by_cart("A").state == "waiting"
    with time_machine.travel(start + dt.timedelta(hours=1, minutes=1), tick=True):
        assert run_due() == 1
    [first] = simulator.messages()
    assert first["channel"] == "sms"
    assert "Red shoes, Blue socks" in first["body"] and "Green hat" not in first["body"]
    with time_machine.travel(start + dt.timedelta(hours=24, minutes=2), tick=True):
        assert run_due() == 1
    assert len(simulator.messages()) == 2
    last = simulator.messages()[-1]
    assert last["body"].startswith("Last chance, Ada: Red shoes, Blue socks")
    assert "Green hat" not in last["body"]
    assert _by_cart("A").state == "completed"
    assert _by_cart("B").state == "converted"


def test_an_order_for_another_cart_does_not_wake_the_wait(blueprints, simulator, fire, run_due):
    # The goal is off here, so only the keyed wait decides.
    Journey.objects.filter(slug="abandoned-cart").update(goal_event="", goal_match={})
    start = timezone.now().replace(hour=12, minute=0)
    with time_machine.travel(start, tick=True):
        fire("cart.updated", ADA, CART_A)
    with time_machine.travel(start + dt.timedelta(minutes=5), tick=True):
        other = fire("order.completed", {"external_id": "ada"}, {"cart_id": "B"})
        assert other["resumed"] == []
        unkeyed = fire("order.completed", {"external_id": "ada"}, {})
        assert unkeyed["resumed"] == []
        assert _by_cart("A").state == "waiting"
        mine = fire("order.completed", {"external_id": "ada"}, {"cart_id": "A"})
        assert mine["resumed"] == [_by_cart("A").pk]
    assert _by_cart("A").state == "completed"
    assert simulator.messages() == []


def test_fixed_value_match(blueprints, fire):
    step = Step.objects.get(journey__slug="abandoned-cart", key="wait-for-order")
    step.config = {**step.config, "match": {"cart_id": "trigger.cart_id", "status": "paid"}}
    step.save()
    Journey.objects.filter(slug="abandoned-cart").update(goal_event="", goal_match={})
    fire("cart.updated", ADA, CART_A)
    pending = fire("order.completed", {"external_id": "ada"}, {"cart_id": "A", "status": "new"})
    assert pending["resumed"] == []
    paid = fire("order.completed", {"external_id": "ada"}, {"cart_id": "A", "status": "paid"})
    assert paid["resumed"] == [_by_cart("A").pk]


def test_entry_is_keyed_by_cart(blueprints, fire):
    first = fire("cart.updated", ADA, CART_A)
    assert len(first["enrolled"]) == 1
    again = fire("cart.updated", {"external_id": "ada"}, {**CART_A, "items": []})
    assert again["enrolled"] == []  # one running enrollment per contact and cart
    other = fire("cart.updated", {"external_id": "ada"}, CART_B)
    assert len(other["enrolled"]) == 1
    no_cart = fire("cart.updated", {"external_id": "ada"}, {"items": []})
    assert no_cart["enrolled"] == []  # a keyed journey needs the key
    assert Enrollment.objects.count() == 2
    assert set(Enrollment.objects.values_list("entry_key_value", flat=True)) == {"A", "B"}


def test_the_database_holds_the_keyed_entry_policy(blueprints, fire):
    from django.db import IntegrityError, transaction

    fire("cart.updated", ADA, CART_A)
    existing = Enrollment.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrollment.objects.create(
            journey=existing.journey,
            contact=existing.contact,
            entry_policy=existing.entry_policy,
            entry_key_value="A",
            state="active",
        )
    Enrollment.objects.create(
        journey=existing.journey,
        contact=existing.contact,
        entry_policy=existing.entry_policy,
        entry_key_value="B",
        state="active",
    )


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("cart_id", "match must be an object"),
        ({"cart__id": "trigger.cart_id"}, "is not a property name"),
        ({"cart_id": "trigger."}, "does not name a trigger property"),
        ({"cart_id": {"nested": 1}}, "must be “trigger.<property>” or a string"),
        ({"cart_id": None}, "must be “trigger.<property>” or a string"),
    ],
)
def test_bad_match_config_is_refused(blueprints, match, message):
    journey = Journey.objects.get(slug="abandoned-cart")
    step = journey.steps.get(key="wait-for-order")
    step.config = {**step.config, "match": match}
    step.save()
    assert any(message in p for p in journey_problems(journey)), journey_problems(journey)
    journey = Journey.objects.get(slug="abandoned-cart")
    step.config = {k: v for k, v in step.config.items() if k != "match"}
    step.save()
    journey.goal_match = match
    assert any(p.startswith("Goal") and message in p for p in journey_problems(journey))


def test_bad_entry_key_and_goal_match_without_goal(blueprints):
    journey = Journey.objects.get(slug="abandoned-cart")
    assert journey_problems(journey) == []
    journey.entry_key = "cart id"
    journey.goal_event = ""
    problems = journey_problems(journey)
    assert "Entry key “cart id” is not a property name (letters, digits, _)." in problems
    assert "Goal: a goal match needs a goal event." in problems


def test_step_form_validates_the_match():
    from journeys.forms import StepForm

    base = {"position": 0, "key": "wait", "kind": "wait_for_event", "event": "order.completed"}
    form = StepForm(data={**base, "match": "{not json"})
    assert not form.is_valid() and form.errors["match"] == ["Not valid JSON."]
    form = StepForm(data={**base, "match": '{"cart_id": []}'})
    assert not form.is_valid() and "must be" in form.errors["match"][0]
    form = StepForm(data={**base, "match": '{"cart_id": "trigger.cart_id"}'})
    assert form.is_valid(), form.errors
    assert form.instance.config["match"] == {"cart_id": "trigger.cart_id"}


def test_fast_forward_through_an_abandoned_cart(
    blueprints, simulator, fire, django_capture_on_commit_callbacks, api
):
    from journeys.services import enrollments_fast_forward

    start = timezone.now().replace(hour=12, minute=0)
    with time_machine.travel(start, tick=True):
        fire("cart.updated", ADA, CART_A)
        fire("cart.updated", {"external_id": "ada"}, CART_B)
        fire("order.completed", {"external_id": "ada"}, {"cart_id": "B"})
        for expected in ("Red shoes, Blue socks in your cart", "Last chance, Ada: Red shoes"):
            with django_capture_on_commit_callbacks(execute=True):
                assert enrollments_fast_forward(queryset=Enrollment.objects.all()) == 1
            assert expected in simulator.messages()[-1]["body"]
    assert len(simulator.messages()) == 2
    assert _by_cart("A").state == "completed" and _by_cart("B").state == "converted"
    listed = api.get("/api/v1/journeys/", {"status": "active"}).json()["results"]
    [cart] = [j for j in listed if j["slug"] == "abandoned-cart"]
    assert cart["entry_key"] == "cart_id"
    assert cart["goal_match"] == {"cart_id": "trigger.cart_id"}


def test_dry_run_answers_a_keyed_wait_with_the_same_key(blueprints, simulator):
    from journeys.dryrun import dry_run
    from tests.factories import ContactFactory

    contact = ContactFactory(phone="+14155552671", timezone="Europe/London")
    journey = Journey.objects.get(slug="abandoned-cart")
    ordered = dry_run(
        journey=journey, contact=contact, properties=CART_A, replies={"wait-for-order": "ok"}
    )
    assert ordered.outcome == "Converted"
    assert not any("sends" in line.what for line in ordered.lines)
    abandoned = dry_run(journey=journey, contact=contact, properties=CART_A)
    assert [line.step for line in abandoned.lines if "sends" in line.what] == [
        "reminder",
        "last-reminder",
    ]
