"""The API accepts an event (stored, 202) and a worker applies it: one task per burst, a
sweeper for events whose kick was lost, each event applied once."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.cache import cache
from django.utils import timezone

from journeys import services, tasks
from journeys.models import Enrollment, Event, Journey, Step
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_pending_kick():
    cache.delete(services.EVENTS_KICK_FLAG)
    yield
    cache.delete(services.EVENTS_KICK_FLAG)


@pytest.fixture
def journey():
    journey = Journey.objects.create(
        name="J", slug="j", status="active", trigger_event="thing.happened"
    )
    Step.objects.create(
        journey=journey, position=0, key="pause", kind="wait", config={"duration_seconds": 3600}
    )
    return journey


def post(api, key, properties=None):
    body = {"name": "thing.happened", "contact": {"external_id": "c1"}}
    body["properties"] = properties or {}
    return api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_the_answer_comes_before_the_work_and_a_replay_shows_it_done(
    api, journey, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as kicks:
        accepted = post(api, "a1")
    assert accepted.status_code == 202
    assert accepted.json()["processed_at"] is None and accepted.json()["enrolled"] == []
    assert Enrollment.objects.count() == 0  # nothing applied inside the request
    assert len(kicks) == 1

    with django_capture_on_commit_callbacks(execute=True):
        kicks[0]()  # the kick: process_events runs (eager Celery)
    replay = post(api, "a1")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    enrollment = Enrollment.objects.get()
    assert replay.json()["enrolled"] == [{"journey": "j", "enrollment": enrollment.pk}]
    assert replay.json()["processed_at"] is not None
    assert Touchpoint.objects.filter(kind="event").count() == 1


def test_a_burst_of_events_queues_one_task(
    api, journey, django_capture_on_commit_callbacks, settings
):
    if not settings.REDIS_URL:
        pytest.skip("the pending-kick flag needs the shared (Redis) cache")
    with mock.patch.object(tasks.process_events, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            for i in range(5):
                assert post(api, f"burst-{i}").status_code == 202
        assert delay.call_count == 1  # the other four saw the pending kick
        tasks.process_events.run()  # the queued task, as a worker runs it
        assert Event.objects.filter(processed_at__isnull=True).count() == 0
        assert Enrollment.objects.count() == 1  # once at a time: the first event enrolls
        # The task took the kick: the next event queues a new one.
        with django_capture_on_commit_callbacks(execute=True):
            post(api, "burst-after")
        assert delay.call_count == 2


def test_a_lost_kick_is_swept(api, journey, django_capture_on_commit_callbacks, settings):
    settings.EVENT_SWEEP_AFTER_SECONDS = 10
    with django_capture_on_commit_callbacks(execute=False):  # the process dies: no kick
        assert post(api, "lost").status_code == 202
    event = Event.objects.get()
    assert tasks.sweep_events() == 0  # too fresh: its kick may still be on the way
    assert Event.objects.get().processed_at is None
    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - dt.timedelta(seconds=11))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_events() == 1
    event.refresh_from_db()
    assert event.processed_at is not None
    assert event.result["enrolled"] == [{"journey": "j", "enrollment": Enrollment.objects.get().pk}]
    assert tasks.sweep_events() == 0  # applied once


def test_an_event_whose_work_fails_is_parked_not_retried_forever(api, journey, caplog):
    accepted = post(api, "boom")
    with mock.patch.object(services, "_wake", side_effect=RuntimeError("boom")):
        assert services.events_apply_pending() == 1
    event = Event.objects.get(pk=accepted.json()["id"])
    assert event.processed_at is not None and event.result == {"error": "RuntimeError"}
    assert Enrollment.objects.count() == 0  # the failed event's work rolled back
    assert "Applying event" in caplog.text
    assert services.events_apply_pending() == 0
    shown = api.get(f"/api/v1/events/{event.pk}/").json()
    assert shown["error"] == "RuntimeError" and shown["processed_at"] is not None


def test_an_event_can_be_read_back_with_what_applying_it_did(api, journey):
    from rest_framework.test import APIClient

    from messaging.models import ApiKey

    accepted = post(api, "read-back").json()
    url = f"/api/v1/events/{accepted['id']}/"
    pending = api.get(url)
    assert pending.status_code == 200
    assert pending.json() == accepted  # stored, not applied yet
    services.events_apply_pending()
    done = api.get(url).json()
    enrollment = Enrollment.objects.get()
    assert done["processed_at"] is not None and done["error"] == ""
    assert done["enrolled"] == [{"journey": "j", "enrollment": enrollment.pk}]
    assert done["contact"] == {"id": enrollment.contact_id, "external_id": "c1"}

    assert api.get("/api/v1/events/999999/").status_code == 404
    _, writer = ApiKey.objects.create_key(name="writer", scopes=["events:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {writer}")
    denied = client.get(url)
    assert denied.status_code == 403 and "events:read" in denied.json()["errors"][0]["detail"]


def test_new_event_request_queries_are_few(api, journey, django_assert_max_num_queries):
    post(api, "warm")  # the contact exists now, unchanged by the next request
    # the API key's row (revoked?), replay lookup, then in one transaction (a SAVEPOINT and
    # its RELEASE under the test's): the key's claim, the lookup again under it, contact
    # read (unchanged: no lock, no UPDATE), INSERT
    with django_assert_max_num_queries(8):
        assert post(api, "second").status_code == 202
    with django_assert_max_num_queries(2):  # the API key's row, the replay
        assert post(api, "second").status_code == 200


def test_the_fast_output_is_the_documented_serializer(api, journey):
    import json

    from journeys.api import EventOutput, event_output

    accepted = post(api, "out", properties={"order": {"id": 1}})
    event = Event.objects.get(pk=accepted.json()["id"])
    assert accepted.json() == json.loads(json.dumps(EventOutput(event).data))
    services.events_apply_pending()
    event = Event.objects.select_related("contact").get(pk=event.pk)
    assert event.processed_at is not None and event.result["enrolled"]
    assert json.loads(json.dumps(event_output(event))) == json.loads(
        json.dumps(EventOutput(event).data)
    )


def test_replays_answered_before_validation_only_when_the_body_is_the_same(api, journey):
    assert post(api, "r1").status_code == 202
    again = post(api, "r1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    # The same key with an invalid body: its validation error, as before.
    bad = api.post(
        "/api/v1/events/",
        {"name": "bad name", "contact": {"external_id": "c1"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r1",
    )
    assert bad.status_code == 400
    # The key in the body instead of the header: the same event.
    body = {"name": "thing.happened", "contact": {"external_id": "c2"}, "idempotency_key": "r2"}
    first = api.post("/api/v1/events/", body, format="json")
    replay = api.post("/api/v1/events/", body, format="json")
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json()["id"] == first.json()["id"]
    # Header and body disagreeing is a 400, even when one of them names a stored event.
    mixed = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    assert mixed.status_code == 400
    assert Event.objects.count() == 2


def test_without_a_shared_cache_every_event_kicks(
    api, journey, settings, django_capture_on_commit_callbacks
):
    # The embedded default: the worker's cache is not the web process's, so no pending flag.
    settings.REDIS_URL = ""
    with (
        mock.patch.object(tasks.process_events, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for i in range(3):
            assert post(api, f"local-{i}").status_code == 202
    assert delay.call_count == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql",
    reason="SKIP LOCKED needs PostgreSQL",
)
def test_a_contacts_events_are_applied_in_the_order_they_arrived(journey):
    """While another worker holds a contact's earlier event (mid-batch), that contact's later
    event is left pending, not applied ahead of it; other contacts' events go on."""
    import threading

    from django.db import connection, transaction

    from tests.factories import ContactFactory

    ada, bob = ContactFactory(external_id="ada"), ContactFactory(external_id="bob")

    def accept(contact, key):
        event, _ = services.event_accept(
            name="thing.happened", contact=contact, properties={}, idempotency_key=key
        )
        return event

    with mock.patch.object(services, "events_kick"):  # no worker yet: applied below
        first, later, other = accept(ada, "e1"), accept(ada, "e2"), accept(bob, "e3")
    assert Event.objects.filter(processed_at__isnull=True).count() == 3
    held, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                Event.objects.select_for_update().filter(pk=first.pk).get()
                held.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert held.wait(10)
        with mock.patch("journeys.tasks.process_events.apply_async") as look_again:
            services.events_apply_pending()
        assert look_again.called  # the skipped event is looked at again shortly
    finally:
        release.set()
        worker.join()
    applied = set(Event.objects.filter(processed_at__isnull=False).values_list("pk", flat=True))
    assert applied == {other.pk}  # bob's went on; ada's later one waited for her first
    services.events_apply_pending()
    order = list(
        Event.objects.filter(contact=ada)
        .order_by("processed_at", "pk")
        .values_list("pk", flat=True)
    )
    assert order == [first.pk, later.pk]
    assert Event.objects.filter(processed_at__isnull=True).count() == 0


def test_a_passing_database_error_leaves_the_event_pending_not_failed(
    api, journey, django_capture_on_commit_callbacks
):
    """A deadlock or a lock timeout is not the event's fault: it (and its contact's later
    events) stay pending for the next pass; other contacts' events go on."""
    from django.db import OperationalError

    first = post(api, "t1").json()["id"]
    later = post(api, "t2").json()["id"]
    other = api.post(
        "/api/v1/events/",
        {"name": "thing.happened", "contact": {"external_id": "c2"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="t3",
    ).json()["id"]
    real_wake = services._wake

    def deadlock_once(event, now):
        if event.pk == first:
            raise OperationalError("deadlock detected")
        return real_wake(event, now)

    with (
        mock.patch.object(services, "_wake", side_effect=deadlock_once),
        mock.patch("journeys.tasks.process_events.apply_async") as look_again,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.events_apply_pending()
    pending = set(Event.objects.filter(processed_at__isnull=True).values_list("pk", flat=True))
    assert pending == {first, later}
    assert Event.objects.get(pk=other).processed_at is not None
    assert Event.objects.get(pk=first).result == {}  # not parked as failed
    assert look_again.called
    services.events_apply_pending()
    assert not Event.objects.filter(processed_at__isnull=True).exists()
    assert Enrollment.objects.count() == 2


def test_an_event_written_by_older_code_counts_as_applied(journey):
    """A rolling deploy: an old web process inserts events it has applied itself, without
    processed_at. The column's database default marks them applied, so the sweeper does not
    apply them a second time."""
    from tests.factories import ContactFactory

    contact = ContactFactory(external_id="old")
    with connection_cursor() as cursor:
        cursor.execute(
            "INSERT INTO journeys_event (name, contact_id, properties, occurred_at, received_at,"
            " source, request_fingerprint, result) VALUES"
            " ('thing.happened', %s, '{}', %s, %s, 'api', '', '{}')",
            [contact.pk, timezone.now(), timezone.now()],
        )
    assert Event.objects.get().processed_at is not None
    assert services.events_apply_pending() == 0
    assert Enrollment.objects.count() == 0


def connection_cursor():
    from django.db import connection

    return connection.cursor()


def test_a_nul_in_the_body_key_is_a_400_not_a_500(api, journey):
    response = api.post(
        "/api/v1/events/",
        {"name": "thing.happened", "contact": {"external_id": "c1"}, "idempotency_key": "a\x00b"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "idempotency_key"


def test_an_event_no_active_journey_uses_is_flagged_in_the_answer_and_after_applying(api):
    accepted = post(api, "w1")
    assert accepted.status_code == 202
    [warning] = accepted.json()["warnings"]
    assert "'thing.happened'" in warning and "starts nothing" in warning
    services.events_apply_pending()
    event = Event.objects.get(pk=accepted.json()["id"])
    assert event.result["warnings"] == [warning]
    shown = api.get(f"/api/v1/events/{event.pk}/").json()
    assert shown["processed_at"] is not None and shown["warnings"] == [warning]


def test_activating_a_journey_clears_the_flag_at_once(api):
    assert post(api, "w2").json()["warnings"]  # the names in use are cached now
    journey = Journey.objects.create(name="J", slug="j", trigger_event="thing.happened")
    assert post(api, "w3").json()["warnings"], "a draft journey does not count"
    journey.status = "active"
    journey.save()
    accepted = post(api, "w4")
    assert accepted.json()["warnings"] == []
    services.events_apply_pending()
    assert "warnings" not in Event.objects.get(pk=accepted.json()["id"]).result


@pytest.mark.parametrize("use", ["goal", "wait"])
def test_an_event_a_journey_has_as_goal_or_waits_for_is_not_flagged(api, use):
    journey = Journey.objects.create(
        name="J", slug="j", status="active", trigger_event="other.thing"
    )
    if use == "goal":
        journey.goal_event = "thing.happened"
        journey.save()
    else:
        Step.objects.create(
            journey=journey,
            position=0,
            key="w",
            kind="wait_for_event",
            config={"event": "thing.happened", "timeout_seconds": 60},
        )
    accepted = post(api, "w5")
    assert accepted.json()["warnings"] == []
    services.events_apply_pending()
    assert "warnings" not in Event.objects.get(pk=accepted.json()["id"]).result
