"""Conversion attribution: which message an applied conversion event is credited to (last
click, else last delivery; last touch), inside which window, among competing journeys and
broadcasts, counted once, with its revenue; and what a non-conversion event costs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.utils import timezone

from insights.attribution import attribute_event, currency_parse, revenue_parse
from insights.models import Conversion
from journeys import event_hooks, services
from journeys.models import Event
from messaging.models import Touchpoint
from tests.factories import ContactFactory

from .attribution_helpers import (
    HOUR,
    T,
    broadcast,
    broadcast_message,
    click,
    fire,
    journey,
    journey_message,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["one_statement", "orm"])
def path(request, monkeypatch):
    """Every test runs on both paths: PostgreSQL's single statement (insights.attribution_sql)
    and the ORM queries SQLite uses (chosen by the connection's vendor)."""
    from django.db import connection

    if request.param == "orm" or connection.vendor != "postgresql":
        monkeypatch.setattr("insights.attribution.connection", SimpleNamespace(vendor="sqlite"))
    return request.param


def only_conversion() -> Conversion:
    [conversion] = Conversion.objects.all()
    return conversion


def test_last_click_beats_a_later_delivery():
    contact = ContactFactory()
    j = journey("winback")
    clicked = journey_message(j, contact, sent=T - 10 * HOUR, delivered=T - 10 * HOUR)
    click(clicked, T - 9 * HOUR)
    journey_message(j, contact, sent=T - 2 * HOUR, delivered=T - 2 * HOUR)

    event = fire(contact, total=49.9)

    conversion = only_conversion()
    assert (conversion.message_id, conversion.touch) == (clicked.pk, "clicked")
    assert conversion.touched_at == T - 9 * HOUR
    assert (conversion.journey_id, conversion.step_id) == (j.pk, j.steps.get().pk)
    assert (conversion.model, conversion.event_name, conversion.occurred_at) == (
        "last_click",
        "order.completed",
        T,
    )
    assert conversion.event_id == event.pk and conversion.channel == "sms"
    assert event.result["conversion"]["message"] == str(clicked.pk)


def test_without_a_click_the_latest_delivery_wins_and_a_message_only_sent_does_not_count():
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - 10 * HOUR, delivered=T - 10 * HOUR)
    latest = journey_message(j, contact, sent=T - 3 * HOUR, delivered=T - 2 * HOUR)
    journey_message(j, contact, sent=T - HOUR)  # sent, never delivered
    fire(contact)
    conversion = only_conversion()
    assert (conversion.message_id, conversion.touch) == (latest.pk, "delivered")
    assert conversion.touched_at == T - 2 * HOUR  # the delivery's time, not the send's


def test_a_read_receipt_without_a_delivery_report_counts_as_delivered_at_its_time():
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - 5 * HOUR, delivered=T - 5 * HOUR)
    read = journey_message(j, contact, sent=T - 4 * HOUR, read=T - 3 * HOUR)
    fire(contact)
    assert only_conversion().message_id == read.pk
    assert only_conversion().touched_at == T - 3 * HOUR


def test_last_touch_credits_the_latest_delivery_even_if_another_was_clicked():
    contact = ContactFactory()
    j = journey("winback", model="last_touch")
    clicked = journey_message(j, contact, sent=T - 10 * HOUR, delivered=T - 10 * HOUR)
    click(clicked, T - 9 * HOUR)
    latest = journey_message(j, contact, sent=T - 2 * HOUR, delivered=T - 2 * HOUR)
    fire(contact)
    conversion = only_conversion()
    assert (conversion.message_id, conversion.touch, conversion.model) == (
        latest.pk,
        "delivered",
        "last_touch",
    )


def test_an_exact_tie_goes_to_the_same_message_on_every_database():
    contact = ContactFactory()
    j = journey("winback")
    first = journey_message(j, contact, sent=T - 3 * HOUR, delivered=T - 2 * HOUR)
    second = journey_message(j, contact, sent=T - 3 * HOUR, delivered=T - 2 * HOUR)
    fire(contact)
    assert only_conversion().message_id == max(first.pk, second.pk)


@pytest.mark.parametrize(
    ("sent", "credited"),
    [
        (T - 24 * HOUR, True),  # the window's first instant is inside
        (T - 24 * HOUR - dt.timedelta(seconds=1), False),  # a second earlier is not
        (T, True),  # sent and delivered at the event's own time
    ],
)
def test_window_edges(sent, credited):
    contact = ContactFactory()
    j = journey("winback", window=24)
    message = journey_message(j, contact, sent=sent, delivered=max(sent, T - HOUR))
    fire(contact)
    found = Conversion.objects.filter(message=message).exists()
    assert found is credited


def test_a_touch_after_the_event_does_not_count():
    contact = ContactFactory()
    j = journey("winback")
    message = journey_message(j, contact, sent=T - HOUR, delivered=T + dt.timedelta(seconds=1))
    click(journey_message(j, contact, sent=T - HOUR), T + HOUR)  # clicked only later
    fire(contact)
    assert not Conversion.objects.exists()
    assert message.touchpoints.filter(kind="converted").count() == 0


def test_two_journeys_and_a_broadcast_compete():
    contact = ContactFactory()
    first = journey("first", window=72)
    second = journey("second", window=72, model="last_touch")
    promo = broadcast("promo", window=72)
    other = journey("other", ["signup.completed"])  # counts another event
    journey_message(first, contact, sent=T - 6 * HOUR, delivered=T - 5 * HOUR)
    second_latest = journey_message(second, contact, sent=T - 2 * HOUR, delivered=T - 2 * HOUR)
    click(second_latest, T - HOUR)  # a last-touch owner's click is not a click credit
    promo_message = broadcast_message(promo, contact, sent=T - 8 * HOUR, delivered=T - 8 * HOUR)
    click(promo_message, T - 7 * HOUR)
    journey_message(other, contact, sent=T - HOUR, delivered=T - HOUR)
    journey_message(first, ContactFactory(), sent=T - HOUR, delivered=T - HOUR)  # someone else

    fire(contact)

    conversion = only_conversion()  # the broadcast's click beats every delivery
    assert (conversion.message_id, conversion.touch) == (promo_message.pk, "clicked")
    assert (conversion.broadcast_id, conversion.journey_id, conversion.step_id) == (
        promo.pk,
        None,
        None,
    )

    # Without the click: the latest delivery among the owners, with its owner's model.
    contact2 = ContactFactory()
    journey_message(first, contact2, sent=T - 6 * HOUR, delivered=T - 5 * HOUR)
    latest = journey_message(second, contact2, sent=T - 3 * HOUR, delivered=T - 2 * HOUR)
    broadcast_message(promo, contact2, sent=T - 8 * HOUR, delivered=T - 8 * HOUR)
    journey_message(other, contact2, sent=T - HOUR, delivered=T - HOUR)  # not an owner
    fire(contact2)
    conversion = Conversion.objects.get(contact=contact2)
    assert (conversion.message_id, conversion.journey_id, conversion.model) == (
        latest.pk,
        second.pk,
        "last_touch",
    )


def test_each_owner_has_its_own_window():
    contact = ContactFactory()
    short = journey("short", window=1)
    long = journey("long", window=48)
    journey_message(short, contact, sent=T - 3 * HOUR, delivered=T - 30 * dt.timedelta(minutes=1))
    older = journey_message(long, contact, sent=T - 24 * HOUR, delivered=T - 23 * HOUR)
    fire(contact)
    assert only_conversion().message_id == older.pk  # the later one is outside its 1 h


def test_a_draft_journey_counts_nothing():
    contact = ContactFactory()
    draft = journey("draft", status="draft")
    journey_message(draft, contact, sent=T - HOUR, delivered=T - HOUR)
    fire(contact)
    assert not Conversion.objects.exists()


def test_bot_clicks_are_ignored():
    contact = ContactFactory()
    j = journey("winback")
    scanned = journey_message(j, contact, sent=T - 3 * HOUR, delivered=T - 3 * HOUR)
    click(scanned, T - HOUR, bot=True)
    delivered = journey_message(j, contact, sent=T - 2 * HOUR, delivered=T - 2 * HOUR)
    fire(contact)
    conversion = only_conversion()
    assert (conversion.message_id, conversion.touch) == (delivered.pk, "delivered")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (49.9, Decimal("49.90")),
        (10, Decimal("10.00")),
        ("19.999", Decimal("20.00")),
        (" 7.5 ", Decimal("7.50")),
        (0, Decimal("0.00")),
        (True, None),
        (None, None),
        ("abc", None),
        ("1e5", None),
        ("NaN", None),
        ("-5", None),
        (-5, None),
        (float("inf"), None),
        (10**12, None),
        ({"amount": 5}, None),
        ([5], None),
        ("", None),
    ],
)
def test_revenue_parsing(value, expected):
    assert revenue_parse(value) == expected


def test_currency_parsing():
    assert [currency_parse(v) for v in ("eur", "USD", "EURO", "E1R", 978, None, "")] == [
        "EUR",
        "USD",
        "",
        "",
        "",
        "",
        "",
    ]


@pytest.mark.parametrize(
    ("properties", "revenue", "currency"),
    [
        ({"total": "49.90", "currency": "eur"}, Decimal("49.90"), "EUR"),
        ({"total": "lots", "currency": "euros"}, None, ""),
        ({"total": {"nested": 1}}, None, ""),
        ({}, None, ""),
    ],
)
def test_revenue_and_currency_from_the_event(properties, revenue, currency):
    contact = ContactFactory()
    j = journey("winback", revenue_property="total")
    message = journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    fire(contact, **properties)
    conversion = only_conversion()
    assert (conversion.revenue, conversion.currency) == (revenue, currency)
    [touch] = message.touchpoints.filter(kind="converted")
    assert touch.data["revenue"] == (str(revenue) if revenue is not None else None)
    assert touch.data["currency"] == currency


def test_no_revenue_property_no_revenue():
    contact = ContactFactory()
    j = journey("winback", revenue_property="")
    journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    fire(contact, total=10)
    assert only_conversion().revenue is None


def test_the_converted_touchpoint_is_on_the_credited_message_and_the_timeline(api):
    contact = ContactFactory()
    j = journey("winback")
    message = journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    event = fire(contact, total="12.5", currency="GBP")
    [touch] = Touchpoint.objects.filter(kind="converted")
    assert (touch.message_id, touch.contact_id, touch.occurred_at) == (message.pk, contact.pk, T)
    assert touch.dedupe_key == f"conversion:{event.pk}"
    assert touch.data == {
        "event": "order.completed",
        "event_id": event.pk,
        "journey": j.pk,
        "step": j.steps.get().pk,
        "broadcast": None,
        "model": "last_click",
        "touch": "delivered",
        "revenue": "12.50",
        "currency": "GBP",
    }
    timeline = api.get(f"/api/v1/touchpoints/?contact={contact.external_id}&kind=converted")
    assert timeline.status_code == 200, timeline.content
    assert [row["kind"] for row in timeline.json()["results"]] == ["converted"]


def test_a_replayed_event_counts_once():
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    first = fire(contact, key="order-1001", total=5)
    again = fire(contact, key="order-1001", total=5)
    assert first.pk == again.pk
    assert Conversion.objects.count() == 1
    assert Touchpoint.objects.filter(kind="converted").count() == 1


def test_applying_an_event_twice_counts_once():
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - 3 * HOUR, delivered=T - 3 * HOUR)
    event = fire(contact, total=5)
    # a newer click arrives, then the event is applied again: nothing changes
    click(journey_message(j, contact, sent=T - 2 * HOUR), T - HOUR)
    before = only_conversion()
    services._apply_event(Event.objects.get(pk=event.pk), timezone.now())
    assert only_conversion().message_id == before.message_id
    assert Touchpoint.objects.filter(kind="converted").count() == 1


def test_a_non_conversion_event_writes_nothing_and_queries_nothing(django_assert_num_queries):
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    event = fire(contact, "page.viewed")
    assert not Conversion.objects.exists()
    assert not Touchpoint.objects.filter(kind="converted").exists()
    assert "conversion" not in event.result
    with django_assert_num_queries(0):  # the owners are cached: a dict lookup
        assert attribute_event(event, timezone.now()) is None


def test_a_conversion_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    contact = ContactFactory()
    owners = [journey(f"j{i}", window=24 * (i + 1)) for i in range(3)] + [broadcast("promo")]
    for i in range(30):
        owner = owners[i % 3]
        journey_message(owner, contact, sent=T - (i + 1) * HOUR, delivered=T - (i + 1) * HOUR)
    event = Event.objects.create(
        name="order.completed", contact=contact, occurred_at=T, properties={"total": 1}
    )
    attribute_event(Event(name="other", contact=contact, occurred_at=T), T)  # warm the cache
    # one query for the best touch (clicks UNION ALL deliveries), the Conversion, the touchpoint
    with django_assert_max_num_queries(3):
        assert attribute_event(event, timezone.now()) is not None


def test_the_hook_is_registered_and_can_be_switched_off():
    contact = ContactFactory()
    j = journey("winback")
    journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    assert attribute_event in event_hooks._hooks
    event_hooks.unregister(attribute_event)
    try:
        fire(contact)
    finally:
        event_hooks.register(attribute_event)
    assert not Conversion.objects.exists()
    fire(contact, at=T + dt.timedelta(seconds=1))
    assert Conversion.objects.count() == 1


def test_an_internal_event_converts_too():
    contact = ContactFactory()
    j = journey("winback", ["message.replied"])
    journey_message(j, contact, sent=timezone.now() - HOUR, delivered=timezone.now() - HOUR)
    event = services.internal_event(
        contact_id=contact.pk, name="message.replied", properties={}, key="reply-1"
    )
    assert Conversion.objects.get().event_id == event.pk


def test_a_batch_reads_the_owners_once_and_sees_a_save_at_once(monkeypatch):
    """Events applied with one `now` (one batch of events_apply_pending) read the owners from
    the cache once; saving a journey drops that memo, so the next event already counts it."""
    from insights import selectors

    contacts = [ContactFactory() for _ in range(3)]
    j = journey("winback")
    for contact in contacts:
        journey_message(j, contact, sent=T - HOUR, delivered=T - HOUR)
    reads = []
    real = selectors.conversion_owners
    monkeypatch.setattr(selectors, "conversion_owners", lambda: reads.append(1) or real())

    def event(contact, name="order.completed"):
        return Event.objects.create(name=name, contact=contact, occurred_at=T, properties={})

    now = timezone.now()
    for contact in contacts:
        assert attribute_event(event(contact), now) is not None
    assert len(reads) == 1
    assert Conversion.objects.count() == 3

    upsell = journey("upsell", ["signup.done"])  # saved mid-batch
    journey_message(upsell, contacts[0], sent=T - HOUR, delivered=T - HOUR)
    credit = attribute_event(event(contacts[0], "signup.done"), now)
    assert credit["conversion"]["journey"] == upsell.pk
    assert len(reads) == 2

    attribute_event(event(contacts[1], "page.viewed"), timezone.now())  # the next batch
    assert len(reads) == 3
