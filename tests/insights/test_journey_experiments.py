"""Experiment results of a journey against numbers worked out by hand: treated vs held-out
control, split variants against the first, revenue after each variant; the staff page and
the API endpoint, their input errors and their permission refusals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from insights.journey_experiments import holdout_results, journey_experiment
from insights.models import Conversion
from insights.significance import compare
from journeys.experiments import in_holdout
from journeys.models import Enrollment, Event, Journey, JourneyMessage, Step, StepVisit
from messaging.models import ApiKey, Contact, Message
from tests.factories import ContactFactory
from tests.journeys.test_steps import build_journey, ingest, step, templates  # noqa: F401

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
VARIANTS = [
    {"key": "a", "weight": 60, "goto": "send-a"},
    {"key": "b", "weight": 40, "goto": "send-b"},
]


@pytest.fixture
def world():
    """10 treated enrollments (variant a: 0–5, b: 6–9; converted: 0, 1, 6, 7), 5 held out
    (converted: 0), one treated enrollment a month earlier (converted, out of range), and
    events that must not count: 73 h after entry, before entry, another name, another
    journey's enrollment."""
    journey = Journey.objects.create(
        name="Experiment",
        slug="exp",
        status="active",
        trigger_event="cart.abandoned",
        conversion_events=["order.completed"],
        conversion_window_hours=72,
        holdout_percent=30,
    )
    steps = {
        key: Step.objects.create(journey=journey, position=i, key=key, kind=kind, config=config)
        for i, (key, kind, config) in enumerate(
            [
                ("intro", "send", {"template": "t"}),
                ("split", "split", {"variants": VARIANTS}),
                ("send-a", "send", {"template": "t"}),
                ("send-b", "send", {"template": "t"}),
            ]
        )
    }
    other = Journey.objects.create(name="Other", slug="other", trigger_event="x")
    contacts = Contact.objects.bulk_create(
        [Contact(external_id=f"e-{i}", first_name="E") for i in range(16)]
    )
    treated, control, early = contacts[:10], contacts[10:15], contacts[15]

    def enroll(contact, *, holdout=False, at=T0, journey=journey):
        e = Enrollment.objects.create(
            journey=journey, contact=contact, entry_policy="once", holdout=holdout
        )
        Enrollment.objects.filter(pk=e.pk).update(entered_at=at)
        e.entered_at = at
        return e

    enrollments = [enroll(c) for c in treated]
    for c in control:
        enroll(c, holdout=True)
    enroll(early, at=T0 - dt.timedelta(days=30))
    enroll(treated[3], journey=other)
    for i, e in enumerate(enrollments):
        StepVisit.objects.create(
            enrollment=e,
            step=steps["split"],
            entered_at=T0,
            outcome=f"variant:{'a' if i < 6 else 'b'}",
        )

    def event(contact, at, name="order.completed"):
        return Event.objects.create(name=name, contact=contact, occurred_at=at)

    converting = {
        0: event(treated[0], T0 + H),
        1: event(treated[1], T0 + 72 * H),  # the window's last instant counts
        6: event(treated[6], T0 + 2 * H),
        7: event(treated[7], T0 + 3 * H),
    }
    event(treated[3], T0 + 73 * H)  # too late
    event(treated[4], T0 - H)  # before entering
    event(treated[5], T0 + H, name="cart.viewed")  # not a conversion event
    event(control[0], T0 + 5 * H)
    event(early, T0 - dt.timedelta(days=29))

    def credit(i, step, revenue, visited_at):
        contact, enrollment = treated[i], enrollments[i]
        message = Message.objects.create(
            direction="outbound", channel="sms", contact=contact, to_address="+1", status="sent"
        )
        JourneyMessage.objects.create(
            message=message, enrollment=enrollment, step=steps[step], journey=journey
        )
        StepVisit.objects.create(enrollment=enrollment, step=steps[step], entered_at=visited_at)
        Conversion.objects.create(
            event=converting[i],
            contact=contact,
            message=message,
            journey=journey,
            step=steps[step],
            channel="sms",
            model="last_touch",
            touch="delivered",
            event_name="order.completed",
            revenue=Decimal(revenue),
            currency="EUR",
            occurred_at=converting[i].occurred_at,
            touched_at=T0,
        )

    credit(0, "send-a", "30.00", T0)
    credit(1, "send-a", "10.25", T0 + H)
    credit(6, "send-b", "12.50", T0)
    credit(7, "intro", "99.00", T0 - H)  # a message from before the split: not the variant's
    return journey


RANGE = {"from": "2026-11-10", "to": "2026-11-12"}
START = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
END = dt.datetime(2026, 11, 13, tzinfo=dt.UTC)


def test_treated_against_control(world):
    results = journey_experiment(journey=world, start=START, end=END)
    holdout = results["holdout"]
    assert (holdout["treated"], holdout["treated_converted"]) == (10, 4)
    assert (holdout["control"], holdout["control_converted"]) == (5, 1)
    assert holdout["treated_rate"] == pytest.approx(0.4)
    assert holdout["control_rate"] == pytest.approx(0.2)
    assert holdout["uplift_points"] == pytest.approx(20.0)
    assert holdout["uplift_relative"] == pytest.approx(1.0)
    assert (
        holdout
        == compare(treated=10, treated_converted=4, control=5, control_converted=1).as_dict()
    )
    assert results["conversion_events"] == ["order.completed"]
    # Without bounds the enrollment of a month earlier (converted) counts too.
    everything = journey_experiment(journey=world)["holdout"]
    assert (everything["treated"], everything["treated_converted"]) == (11, 5)


def test_contacts_count_once_by_their_first_entry(world):
    """Re-entries (a held-out enrollment ends at once, so a control contact may re-enter at
    every trigger) count no more contacts; a conversion counts only within the window after
    the contact's first entry in the range. The numbers are the world's own."""
    treated = list(Contact.objects.filter(external_id__in=[f"e-{i}" for i in range(10)]))
    treated.sort(key=lambda c: int(c.external_id[2:]))
    control = list(Contact.objects.filter(external_id__in=[f"e-{i}" for i in range(10, 15)]))
    control.sort(key=lambda c: int(c.external_id[2:]))
    split = Step.objects.get(journey=world, key="split")

    def again(contact, at, *, holdout=False, variant=""):
        e = Enrollment.objects.create(
            journey=world, contact=contact, entry_policy="every_time", state="completed"
        )
        Enrollment.objects.filter(pk=e.pk).update(entered_at=at, holdout=holdout)
        if variant:
            StepVisit.objects.create(
                enrollment=e, step=split, entered_at=at, outcome=f"variant:{variant}"
            )

    for hours in (1, 2, 3):  # control[1] (no conversion) re-enters three times
        again(control[1], T0 + hours * H, holdout=True)
    again(control[0], T0 + 6 * H, holdout=True)  # converted after its first entry only
    # control[2] converts in the window of a later entry only: not a conversion
    again(control[2], T0 + 100 * H, holdout=True)
    Event.objects.create(name="order.completed", contact=control[2], occurred_at=T0 + 101 * H)
    # treated[2] (variant a, not converted) re-enters and converts in the later window only
    again(treated[2], T0 + 100 * H, variant="a")
    Event.objects.create(name="order.completed", contact=treated[2], occurred_at=T0 + 101 * H)
    again(treated[6], T0 + 100 * H, variant="b")  # converted once, counted once

    results = journey_experiment(journey=world, start=START, end=END)
    holdout = results["holdout"]
    assert (holdout["treated"], holdout["treated_converted"]) == (10, 4)
    assert (holdout["control"], holdout["control_converted"]) == (5, 1)
    [variants] = results["splits"]
    a, b = variants["variants"]
    assert (a["entered"], a["converted"]) == (6, 2)
    assert (b["entered"], b["converted"]) == (4, 2)
    # From the range's point of view, a contact whose first entry was before it starts
    # counts by its first entry inside it: treated[2]'s re-entry converted.
    later = journey_experiment(journey=world, start=T0 + 99 * H)
    assert (later["holdout"]["treated"], later["holdout"]["treated_converted"]) == (2, 1)
    assert (later["holdout"]["control"], later["holdout"]["control_converted"]) == (1, 1)
    [late_split] = later["splits"]
    assert [(v["entered"], v["converted"]) for v in late_split["variants"]] == [(1, 1), (1, 0)]


def test_variants_against_the_first(world):
    [split] = journey_experiment(journey=world, start=START, end=END)["splits"]
    assert split["step"] == "split" and split["baseline"] == "a"
    a, b = split["variants"]
    assert (a["key"], a["weight"], a["entered"], a["converted"]) == ("a", 60, 6, 2)
    assert (b["key"], b["weight"], b["entered"], b["converted"]) == ("b", 40, 4, 2)
    assert a["conversion_rate"] == pytest.approx(2 / 6)
    assert b["conversion_rate"] == pytest.approx(0.5)
    assert a["comparison"] is None
    assert (
        b["comparison"]
        == compare(treated=4, treated_converted=2, control=6, control_converted=2).as_dict()
    )
    assert b["comparison"]["test"] == "fisher"  # expected counts under 5
    # Revenue of conversions credited to messages after the variant (not the intro's 99).
    assert (a["conversions_attributed"], a["revenue"]) == (2, "40.25")
    assert (b["conversions_attributed"], b["revenue"]) == (1, "12.50")


def test_the_goal_event_stands_in_when_no_conversion_event_is_set(world):
    Journey.objects.filter(pk=world.pk).update(conversion_events=[], goal_event="cart.viewed")
    world.refresh_from_db()
    holdout = journey_experiment(journey=world, start=START, end=END)["holdout"]
    assert (holdout["treated_converted"], holdout["control_converted"]) == (1, 0)
    Journey.objects.filter(pk=world.pk).update(goal_event="")
    world.refresh_from_db()
    results = journey_experiment(journey=world, start=START, end=END)
    assert results["conversion_events"] == []
    assert (results["holdout"]["treated"], results["holdout"]["treated_converted"]) == (10, 0)


def test_results_take_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        journey_experiment(journey=world, start=START, end=END)


# --- The API ----------------------------------------------------------------------------


def test_api_returns_the_results(world, api):
    response = api.get("/api/v1/journeys/exp/experiment/", RANGE)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["holdout"]["treated"] == 10 and data["holdout"]["control_converted"] == 1
    assert data["holdout_percent"] == 30
    assert data["entered_from"].startswith("2026-11-10") and data["entered_to"].startswith(
        "2026-11-13"
    )
    assert [v["entered"] for v in data["splits"][0]["variants"]] == [6, 4]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "10/11/2026"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-12", "to": "2026-11-10"}, "to"),
        ({"from": "2026-11-10\x00"}, "from"),
        ("to=%ED%A0%80", "to"),  # a lone surrogate, UTF-8 encoded
        ({"to": "9999-12-31"}, "to"),  # well-formed, but a day after it overflows
        ({"from": "0001-01-01"}, "from"),
        ({"from": "1999-12-31", "to": "2000-01-05"}, "from"),
    ],
)
def test_api_bad_dates_are_400_with_the_field(world, api, params, field):
    url = "/api/v1/journeys/exp/experiment/"
    response = api.get(f"{url}?{params}") if isinstance(params, str) else api.get(url, params)
    assert response.status_code == 400
    assert [e["attr"] for e in response.json()["errors"]] == [field]


def test_api_refuses_without_the_journeys_read_scope(world, db):
    _, key = ApiKey.objects.create_key(name="no journeys", scopes=["events:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/journeys/exp/experiment/").status_code == 403
    assert APIClient().get("/api/v1/journeys/exp/experiment/").status_code in (401, 403)


def test_api_unknown_journey_is_404(api, db):
    assert api.get("/api/v1/journeys/nope/experiment/").status_code == 404


# --- The staff page ---------------------------------------------------------------------


def test_staff_page_shows_the_groups_and_variants(world, admin_client):
    page = admin_client.get(f"/admin/touchline/journeys/{world.pk}/experiment/", RANGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<td>Control (held out)</td><td>5</td><td>1</td><td>20.0 %</td>" in html
    assert "<td>Treated (got the journey)</td><td>10</td><td>4</td><td>40.0 %</td>" in html
    assert "+20.0 points" in html
    assert "<td>40.25</td>" in html and "<td>12.50</td>" in html
    dashboard = admin_client.get(f"/admin/touchline/journeys/{world.pk}/dashboard/")
    assert f"/admin/touchline/journeys/{world.pk}/experiment/" in dashboard.content.decode()


def test_staff_page_bad_dates_say_why(world, admin_client):
    page = admin_client.get(
        f"/admin/touchline/journeys/{world.pk}/experiment/", {"from": "yesterday"}
    )
    assert page.status_code == 400
    assert "Write a date like" in page.content.decode()


@pytest.mark.parametrize("params", [{"to": "9999-12-31"}, {"from": "0001-01-01"}])
def test_staff_page_dates_out_of_range_say_why(world, admin_client, params):
    page = admin_client.get(f"/admin/touchline/journeys/{world.pk}/experiment/", params)
    assert page.status_code == 400
    assert "Choose a date between 2000-01-01 and" in page.content.decode()


def test_staff_page_needs_the_view_journey_permission(world, client):
    user = User.objects.create_user("nosy", is_staff=True)
    client.force_login(user)
    url = f"/admin/touchline/journeys/{world.pk}/experiment/"
    assert client.get(url).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_journey"))
    user = User.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get(url).status_code == 200
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_a_holdout_through_real_entries_compares_contacts(simulator, ingest):  # noqa: F811
    """Through the journey engine: under "once at a time" a held-out buyer re-enters at every
    trigger (its enrollment ends at once) while a treated buyer is still waiting; one of two
    contacts converts in each group, so there is no uplift."""
    templates("nudge", "sms")
    journey = build_journey(
        step("wait", "wait", duration_seconds=3 * 86400),
        step("nudge", "send", template="nudge", channel="sms", fallback_channels=[]),
        trigger="cart.abandoned",
        holdout_percent=50,
        entry_policy="once_at_a_time",
        conversion_events=["order.completed"],
        conversion_window_hours=72,
    )
    groups: dict[bool, list] = {True: [], False: []}
    while min(len(g) for g in groups.values()) < 2:
        c = ContactFactory()
        groups[in_holdout(journey_slug=journey.slug, contact_id=c.pk, percent=50)].append(c)
    for held in (True, False):
        buyer, browser = groups[held][:2]
        for _ in range(3):
            ingest("cart.abandoned", buyer)
        ingest("order.completed", buyer)
        ingest("cart.abandoned", browser)
    control_buyer, treated_buyer = groups[True][0], groups[False][0]
    assert Enrollment.objects.filter(contact=control_buyer).count() == 3  # the bias's cause
    assert Enrollment.objects.filter(contact=treated_buyer).count() == 1
    r = holdout_results(journey, None, None)
    assert (r["treated"], r["treated_converted"], r["control"], r["control_converted"]) == (
        2,
        1,
        2,
        1,
    )
    assert r["uplift_points"] == 0
