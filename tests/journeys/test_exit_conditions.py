"""Exit conditions: an event (keyed to the trigger or to fixed values) that ends a journey's
live enrollments for the contact as exited."""

from __future__ import annotations

import pytest

from journeys.lifecycle import journey_copy
from journeys.models import Enrollment, Journey, Step
from journeys.selectors import journey_events_in_use
from journeys.services import event_ingest
from journeys.validation import journey_problems
from messaging.models import Touchpoint
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def cart_journey(**kw):
    fields = {
        "name": "Cart",
        "slug": "cart",
        "status": "active",
        "trigger_event": "cart.updated",
        "entry_policy": "every_time",
        "entry_key": "cart_id",
        "exit_event": "cart.emptied",
        "exit_match": {"cart_id": "trigger.cart_id"},
        **kw,
    }
    journey = Journey.objects.create(**fields)
    Step.objects.create(
        journey=journey,
        position=0,
        key="wait",
        kind="wait_for_event",
        config={"event": "order.completed", "timeout_seconds": 3600},
    )
    return journey


def enroll(contact, **properties):
    event, _ = event_ingest(name="cart.updated", contact=contact, properties=properties)
    [entered] = event.result["enrolled"]
    return Enrollment.objects.get(pk=entered["enrollment"])


def test_an_exit_event_for_one_cart_exits_only_that_cart(django_capture_on_commit_callbacks):
    cart_journey()
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        a, b = enroll(contact, cart_id="A"), enroll(contact, cart_id="B")
    a.refresh_from_db()
    b.refresh_from_db()
    assert {a.state, b.state} == {"waiting"}

    other, _ = event_ingest(name="cart.emptied", contact=contact, properties={"cart_id": "C"})
    assert other.result["exited"] == []
    emptied, _ = event_ingest(name="cart.emptied", contact=contact, properties={"cart_id": "A"})
    assert emptied.result["exited"] == [a.pk]
    assert "warnings" not in emptied.result

    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.state, a.exit_reason) == ("exited", "exit event cart.emptied")
    assert a.ended_at is not None and a.next_run_at is None and a.waiting_for == ""
    assert b.state == "waiting" and b.waiting_for == "order.completed"
    [touchpoint] = Touchpoint.objects.filter(kind="journey_exited")
    assert touchpoint.data["enrollment"] == a.pk
    assert touchpoint.data["reason"] == "exit event cart.emptied"


def test_a_fixed_value_exit_match():
    cart_journey(exit_event="account.changed", exit_match={"status": "closed"})
    contact = ContactFactory()
    enrollment = enroll(contact, cart_id="A")
    props = {"status": "open"}
    open_, _ = event_ingest(name="account.changed", contact=contact, properties=props)
    assert open_.result["exited"] == []
    unkeyed, _ = event_ingest(name="account.changed", contact=contact)
    assert unkeyed.result["exited"] == []
    props = {"status": "closed"}
    closed, _ = event_ingest(name="account.changed", contact=contact, properties=props)
    assert closed.result["exited"] == [enrollment.pk]
    enrollment.refresh_from_db()
    assert enrollment.state == "exited"


def test_no_exit_event_means_no_exit():
    cart_journey(exit_event="", exit_match={})
    contact = ContactFactory()
    enrollment = enroll(contact, cart_id="A")
    emptied, _ = event_ingest(name="cart.emptied", contact=contact, properties={"cart_id": "A"})
    assert emptied.result["exited"] == []
    enrollment.refresh_from_db()
    assert enrollment.state in Enrollment.LIVE_STATES


def test_the_goal_wins_when_one_event_is_both_goal_and_exit():
    cart_journey(
        exit_event="order.completed",
        exit_match={"cart_id": "trigger.cart_id"},
        goal_event="order.completed",
        goal_match={"cart_id": "trigger.cart_id", "status": "paid"},
    )
    contact = ContactFactory()
    paid_cart, failed_cart = enroll(contact, cart_id="A"), enroll(contact, cart_id="B")
    props = {"cart_id": "A", "status": "paid"}
    paid, _ = event_ingest(name="order.completed", contact=contact, properties=props)
    assert paid.result["converted"] == [paid_cart.pk]
    assert paid.result["exited"] == []
    # The goal's match refuses this one; the exit's accepts it.
    props = {"cart_id": "B", "status": "failed"}
    failed, _ = event_ingest(name="order.completed", contact=contact, properties=props)
    assert failed.result["converted"] == []
    assert failed.result["exited"] == [failed_cart.pk]
    paid_cart.refresh_from_db()
    failed_cart.refresh_from_db()
    assert paid_cart.state == "converted" and failed_cart.state == "exited"


def test_an_exit_event_counts_as_used_by_a_journey():
    cart_journey()
    assert "cart.emptied" in journey_events_in_use()


def test_a_new_version_keeps_the_exit_condition():
    journey = cart_journey()
    copy = journey_copy(journey=journey)
    assert (copy.exit_event, copy.exit_match) == ("cart.emptied", {"cart_id": "trigger.cart_id"})


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("cart_id", "match must be an object"),
        ({"cart__id": "trigger.cart_id"}, "is not a property name"),
        ({"cart_id": "trigger."}, "does not name a trigger property"),
        ({"cart_id": [1]}, "must be “trigger.<property>” or a string"),
    ],
)
def test_a_bad_exit_match_blocks_activation(match, message):
    journey = cart_journey(status="draft", exit_match=match)
    assert any(p.startswith("Exit") and message in p for p in journey_problems(journey))


def test_an_exit_match_needs_an_exit_event():
    journey = cart_journey(status="draft", exit_event="")
    assert "Exit: an exit match needs an exit event." in journey_problems(journey)
    journey.exit_event = "cart.emptied"
    assert journey_problems(journey) == []


def _journey_post(**fields):
    return {
        "name": "Cart",
        "slug": "cart-form",
        "description": "",
        "trigger_kind": "event",
        "trigger_segment": "",
        "trigger_event": "cart.updated",
        "trigger_filter": "{}",
        "entry_policy": "once_at_a_time",
        "entry_key": "cart_id",
        "goal_event": "",
        "goal_match": "{}",
        "exit_event": "cart.emptied",
        "exit_match": '{"cart_id": "trigger.cart_id"}',
        "category": "marketing",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "frequency_cap_action": "hold",
        "conversion_window_hours": "72",
        "attribution_model": "last_click",
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_the_journey_form_checks_the_exit_match(client):
    from tests.audiences.test_membership import staff

    client.force_login(staff("marketing"))
    page = client.get("/admin/journeys/journey/add/").content.decode()
    assert 'name="exit_event"' in page and 'name="exit_match"' in page

    bad = client.post("/admin/journeys/journey/add/", _journey_post(exit_match='{"cart_id": []}'))
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "must be “trigger.<property>” or a string" in errors["exit_match"][0]
    alone = client.post("/admin/journeys/journey/add/", _journey_post(exit_event=""))
    assert alone.status_code == 200
    assert alone.context["adminform"].form.errors["exit_match"] == [
        "An exit match needs an exit event."
    ]
    goal = client.post(
        "/admin/journeys/journey/add/", _journey_post(goal_match='{"cart__id": "trigger.x"}')
    )
    assert "is not a property name" in goal.context["adminform"].form.errors["goal_match"][0]
    assert not Journey.objects.filter(slug="cart-form").exists()

    saved = client.post("/admin/journeys/journey/add/", _journey_post())
    assert saved.status_code == 302, saved.content.decode()[:3000]
    journey = Journey.objects.get(slug="cart-form")
    assert journey.exit_event == "cart.emptied"
    assert journey.exit_match == {"cart_id": "trigger.cart_id"}


def test_the_api_shows_the_exit_condition(api, fire):
    cart_journey()
    shown = api.get("/api/v1/journeys/cart/").json()
    assert shown["exit_event"] == "cart.emptied"
    assert shown["exit_match"] == {"cart_id": "trigger.cart_id"}
    fire("cart.updated", {"external_id": "ada"}, {"cart_id": "A"})
    emptied = fire("cart.emptied", {"external_id": "ada"}, {"cart_id": "A"})
    assert emptied["exited"] == [Enrollment.objects.get().pk]
    assert emptied["warnings"] == []


def test_exit_queries_do_not_grow_with_the_enrollments(django_assert_max_num_queries):
    """Ending the matching enrollments is set-based: lock them, one UPDATE, one INSERT of
    their touchpoints — the same count for one cart or many."""
    cart_journey(exit_event="account.closed", exit_match={})
    contact = ContactFactory()

    def ingest_counting(carts: int, limit: int) -> int:
        Enrollment.objects.all().delete()
        for n in range(carts):
            enroll(contact, cart_id=f"cart-{n}")
        with django_assert_max_num_queries(limit) as captured:
            closed, _ = event_ingest(name="account.closed", contact=contact)
        assert len(closed.result["exited"]) == carts
        return len(captured.captured_queries)

    one = ingest_counting(1, 20)
    assert ingest_counting(6, one) == one


def test_a_survey_answer_that_is_the_exit_event_exits_the_enrollment_that_asked(
    simulator, django_capture_on_commit_callbacks
):
    """The engine takes over the ending an event it applied inline made (as for a goal):
    the steps after the survey do not overwrite EXITED."""
    from journeys import engine
    from tests.journeys.test_survey_conversion import _asked, _journey

    Journey.objects.filter(pk=_journey(goal="").pk).update(
        exit_event="survey.answered", exit_match={"score": 9}
    )
    contact, enrollment = _asked(simulator, django_capture_on_commit_callbacks)
    event_ingest(name="message.replied", contact=contact, properties={"body": "9"})
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.enrollment_advance(enrollment_id=enrollment.pk) == "exited"
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "exit event survey.answered")
    assert enrollment.context["steps"]["nps"]["score"] == 9
    assert not enrollment.visits.filter(step__key="after").exists()
    kinds = list(Touchpoint.objects.filter(contact=contact).values_list("kind", flat=True))
    assert kinds.count("journey_exited") == 1


def test_leaving_a_segment_can_be_an_exit_condition():
    """Segment changes become events only when a journey can use them: an exit counts."""
    from tests.journeys.test_segment_triggers import set_plan, vip

    seg = vip()
    journey = cart_journey(exit_event="segment.left", exit_match={"segment": "vip"})
    contact = ContactFactory(attributes={"plan": "pro"})
    set_plan(contact, "pro", seg)
    enrollment = enroll(contact, cart_id="A")
    set_plan(contact, "free", seg)
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "exit event segment.left")
    assert journey.exit_event in journey_events_in_use()


def test_the_abandoned_cart_blueprint_exits_when_that_cart_is_emptied(
    blueprints, simulator, fire, run_due
):
    import datetime as dt

    import time_machine
    from django.utils import timezone

    from tests.journeys.test_keyed_events import ADA, CART_A, CART_B

    Journey.objects.filter(slug="post-purchase").update(status="archived")
    start = timezone.now().replace(hour=12, minute=0)  # outside quiet hours in London
    with time_machine.travel(start, tick=True):
        fire("cart.updated", ADA, CART_A)
        fire("cart.updated", {"external_id": "ada"}, CART_B)
    with time_machine.travel(start + dt.timedelta(minutes=10), tick=True):
        emptied = fire("cart.emptied", {"external_id": "ada"}, {"cart_id": "B"})
    b = Enrollment.objects.get(trigger_event__properties__cart_id="B")
    assert emptied["exited"] == [b.pk]
    assert (b.state, b.exit_reason) == ("exited", "exit event cart.emptied")
    with time_machine.travel(start + dt.timedelta(hours=1, minutes=1), tick=True):
        assert run_due() == 1  # cart A's reminder only
    [reminder] = simulator.messages()
    assert "Red shoes" in reminder["body"] and "Green hat" not in reminder["body"]
