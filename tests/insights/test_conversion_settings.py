"""Conversion settings: validated the same way in the journey admin, the broadcast admin and
API (4xx with field errors, nothing saved), shown by the journeys API; an API event applied by
the worker ends with its Conversion; the migrations carry goals over."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from campaigns.models import Broadcast
from insights.models import Conversion
from journeys import tasks
from journeys.models import Event, Journey
from messaging.conversion import conversion_errors
from messaging.models import Contact, Touchpoint
from tests.campaigns.ui_helpers import sms_subscriber, static_segment, templates

from .attribution_helpers import HOUR, journey, journey_message

pytestmark = pytest.mark.django_db


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


# --- The shared rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"conversion_events": ["order completed"]}, "conversion_events"),
        ({"conversion_events": ["ok", "bad\x00name"]}, "conversion_events"),
        ({"conversion_events": [f"e{i}" for i in range(11)]}, "conversion_events"),
        ({"conversion_events": "order.completed"}, "conversion_events"),
        ({"conversion_events": [5]}, "conversion_events"),
        ({"conversion_window_hours": 0}, "conversion_window_hours"),
        ({"conversion_window_hours": 2161}, "conversion_window_hours"),
        ({"conversion_window_hours": True}, "conversion_window_hours"),
        ({"revenue_property": "order.total"}, "revenue_property"),
        ({"revenue_property": "1total"}, "revenue_property"),
        ({"attribution_model": "first_click"}, "attribution_model"),
    ],
)
def test_the_rules_refuse(values, field):
    assert list(conversion_errors(values)) == [field]


def test_the_rules_accept():
    assert not conversion_errors(
        {
            "conversion_events": [f"e.{i}" for i in range(10)],
            "conversion_window_hours": 2160,
            "revenue_property": "order_total",
            "attribution_model": "last_touch",
        }
    )


# --- Broadcasts API ------------------------------------------------------------------------


@pytest.fixture
def world():
    templates()
    return static_segment("everyone", [sms_subscriber()])


def _body(**extra):
    return {
        "name": "Black Friday",
        "slug": "black-friday",
        "segments": ["everyone"],
        "template_slug": "promo",
        "channel_order": ["sms", "email"],
        **extra,
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"conversion_window_hours": 0}, "conversion_window_hours"),
        ({"conversion_window_hours": 5000}, "conversion_window_hours"),
        ({"conversion_events": ["bad name"]}, "conversion_events.0"),
        ({"conversion_events": ["nul\u0000"]}, "conversion_events.0"),
        ({"conversion_events": [f"e{i}" for i in range(11)]}, "conversion_events"),
        ({"revenue_property": "a.b"}, "revenue_property"),
        ({"revenue_property": "total\u0000"}, "revenue_property"),
        ({"attribution_model": "first_touch"}, "attribution_model"),
        ({"goal_event": "order.completed"}, "goal_event"),  # the old field is gone
    ],
)
def test_broadcast_api_refuses_bad_conversion_settings(api, world, extra, field):
    response = api.post("/api/v1/broadcasts/", _body(**extra), format="json")
    assert response.status_code == 400, response.content
    assert field in _errors(response)
    assert not Broadcast.objects.exists()


def test_broadcast_api_stores_and_shows_conversion_settings(api, world):
    settings = {
        "conversion_events": ["order.completed", "subscription.started"],
        "conversion_window_hours": 48,
        "revenue_property": "total",
        "attribution_model": "last_touch",
    }
    response = api.post("/api/v1/broadcasts/", _body(**settings), format="json")
    assert response.status_code == 201, response.content
    shown = api.get("/api/v1/broadcasts/black-friday/").json()
    assert {k: shown[k] for k in settings} == settings
    changed = api.patch(
        "/api/v1/broadcasts/black-friday/", {"conversion_window_hours": 9999}, format="json"
    )
    assert changed.status_code == 400
    assert Broadcast.objects.get().conversion_window_hours == 48
    report = api.get("/api/v1/broadcasts/black-friday/report/").json()
    assert report["conversion_events"] == ["order.completed", "subscription.started"]


# --- Journeys admin and API -----------------------------------------------------------------


def _journey_form(j: Journey, **extra) -> dict[str, str]:
    return {
        "name": j.name,
        "slug": j.slug,
        "description": "",
        "trigger_kind": "event",
        "trigger_event": j.trigger_event,
        "trigger_filter": "{}",
        "entry_policy": j.entry_policy,
        "entry_key": "",
        "goal_event": "",
        "goal_match": "{}",
        "exit_event": "",
        "exit_match": "{}",
        "category": j.category,
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "frequency_cap_action": "hold",
        "conversion_events": "order.completed, subscription.started",
        "conversion_window_hours": "48",
        "attribution_model": "last_touch",
        "revenue_property": "total",
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        **extra,
    }


def test_journey_admin_shows_and_saves_the_conversion_fieldset(admin_client):
    j = journey("winback", status="draft", events=[])
    url = reverse("admin:journeys_journey_change", args=[j.pk])
    page = admin_client.get(url).content.decode()
    assert "<h2>Conversion</h2>" in page or ">Conversion<" in page
    assert 'name="conversion_events"' in page
    response = admin_client.post(url, _journey_form(j))
    assert response.status_code == 302, response.content.decode()[:3000]
    j.refresh_from_db()
    assert j.conversion_events == ["order.completed", "subscription.started"]
    assert (j.conversion_window_hours, j.attribution_model, j.revenue_property) == (
        48,
        "last_touch",
        "total",
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"conversion_window_hours": "0"}, "conversion_window_hours"),
        ({"conversion_window_hours": "2161"}, "conversion_window_hours"),
        ({"conversion_events": "order completed!"}, "conversion_events"),
        ({"conversion_events": "order.completed\x00"}, "conversion_events"),
        ({"conversion_events": ", ".join(f"e{i}" for i in range(11))}, "conversion_events"),
        ({"revenue_property": "order.total"}, "revenue_property"),
        ({"revenue_property": "total\x00"}, "revenue_property"),
    ],
)
def test_journey_admin_refuses_bad_conversion_settings(admin_client, extra, field):
    j = journey("winback", status="draft", events=["order.completed"], window=72)
    url = reverse("admin:journeys_journey_change", args=[j.pk])
    response = admin_client.post(url, _journey_form(j, **extra))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    j.refresh_from_db()
    assert (j.conversion_events, j.conversion_window_hours) == (["order.completed"], 72)


def test_journeys_api_shows_the_conversion_settings(api):
    journey("winback", events=["order.completed"], window=24, model="last_touch")
    body = api.get("/api/v1/journeys/winback/").json()
    assert body["conversion_events"] == ["order.completed"]
    assert (body["conversion_window_hours"], body["attribution_model"]) == (24, "last_touch")
    assert body["revenue_property"] == "total"


# --- The whole path: an API event applied by the worker --------------------------------------


def test_an_api_event_applied_by_the_worker_is_credited_once(api):
    from django.utils import timezone

    now = timezone.now()
    contact = Contact.objects.create(external_id="cust-42", phone="+14155550100")
    j = journey("winback")
    message = journey_message(j, contact, sent=now - 2 * HOUR, delivered=now - 2 * HOUR)
    body = {
        "name": "order.completed",
        "contact": {"external_id": "cust-42"},
        "properties": {"total": "80.00", "currency": "usd"},
    }
    for _ in range(2):  # the second is a replay of the same Idempotency-Key
        response = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="o-1")
        assert response.status_code in (200, 202)
        tasks.process_events.run()  # what a worker does after the kick
    event = Event.objects.get()
    assert event.processed_at is not None
    conversion = Conversion.objects.get()
    assert (conversion.event_id, conversion.message_id, conversion.journey_id) == (
        event.pk,
        message.pk,
        j.pk,
    )
    assert (str(conversion.revenue), conversion.currency) == ("80.00", "USD")
    assert Touchpoint.objects.filter(kind="converted", message=message).count() == 1
    replay = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="o-1").json()
    assert replay["warnings"] == []


def test_an_event_only_a_broadcast_converts_on_is_not_reported_unused(api):
    Broadcast.objects.create(
        name="B",
        slug="b",
        status="completed",
        template_slug="promo",
        conversion_events=["sale.closed"],
    )
    body = {"name": "sale.closed", "contact": {"external_id": "c-9"}}
    response = api.post("/api/v1/events/", body, format="json")
    assert response.json()["warnings"] == []
    other = api.post("/api/v1/events/", {**body, "name": "sale.opened"}, format="json")
    assert other.json()["warnings"]


# --- Migrations ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_goals_become_conversion_events():
    campaigns_before = ("campaigns", "0004_conv_conversion_settings")
    journeys_before = ("journeys", "0009_conv_conversion_settings")
    executor = MigrationExecutor(connection)
    executor.migrate([campaigns_before, journeys_before])
    old = executor.loader.project_state([campaigns_before, journeys_before]).apps
    OldBroadcast = old.get_model("campaigns", "Broadcast")
    with_goal = OldBroadcast.objects.create(
        name="A",
        slug="a",
        template_slug="promo",
        goal_event="order.completed",
        goal_window_hours=24,
    )
    without = OldBroadcast.objects.create(name="B", slug="b", template_slug="promo")
    OldJourney = old.get_model("journeys", "Journey")
    goal = OldJourney.objects.create(
        name="J", slug="j", trigger_event="x", goal_event="onboarding.completed"
    )
    kept = OldJourney.objects.create(
        name="K", slug="k", trigger_event="x", goal_event="g", conversion_events=["own.event"]
    )

    executor = MigrationExecutor(connection)
    executor.migrate(
        executor.loader.graph.leaf_nodes("campaigns") + executor.loader.graph.leaf_nodes("journeys")
    )

    a, b = Broadcast.objects.get(pk=with_goal.pk), Broadcast.objects.get(pk=without.pk)
    assert (a.conversion_events, a.conversion_window_hours) == (["order.completed"], 24)
    assert (b.conversion_events, b.conversion_window_hours) == ([], 72)
    assert not hasattr(a, "goal_event")
    assert Journey.objects.get(pk=goal.pk).conversion_events == ["onboarding.completed"]
    assert Journey.objects.get(pk=kept.pk).conversion_events == ["own.event"]


def test_a_new_version_keeps_the_conversion_settings():
    from journeys.lifecycle import journey_copy

    j = journey("winback", events=["order.completed"], window=24, model="last_touch")
    copy = journey_copy(journey=j)
    assert (copy.version, copy.conversion_events, copy.conversion_window_hours) == (
        2,
        ["order.completed"],
        24,
    )
    assert (copy.attribution_model, copy.revenue_property) == ("last_touch", "total")
