"""Event ingestion: idempotency, batches, entry policies and their constraints, concurrency,
and bounded query counts per advanced enrollment."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from journeys import engine, tasks
from journeys.models import Enrollment, Event, Journey, Step, StepVisit
from journeys.services import enrollment_start, event_ingest
from messaging.models import Touchpoint
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def make_journey(policy="once_at_a_time", trigger="thing.happened", **kw):
    journey = Journey.objects.create(
        name=f"J {policy}",
        slug=f"j-{policy}-{trigger}".replace(".", "-"),
        status="active",
        trigger_event=trigger,
        entry_policy=policy,
        **kw,
    )
    Step.objects.create(
        journey=journey, position=0, key="pause", kind="wait", config={"duration_seconds": 3600}
    )
    return journey


def test_same_key_twice_is_one_event_and_one_enrollment(api, fire):
    make_journey()
    first = fire("thing.happened", {"external_id": "k1"}, key="evt-1")
    api_second = api.post(
        "/api/v1/events/",
        {"name": "thing.happened", "contact": {"external_id": "k1"}, "properties": {}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="evt-1",
    )
    assert api_second.status_code == 200
    assert api_second["Idempotent-Replayed"] == "true"
    assert api_second.json() == first
    assert Event.objects.count() == 1
    assert Enrollment.objects.count() == 1
    assert Touchpoint.objects.filter(kind="event").count() == 1


def test_same_key_with_a_different_body_is_409(api, fire):
    fire("thing.happened", {"external_id": "k1"}, key="evt-2")
    conflict = api.post(
        "/api/v1/events/",
        {"name": "thing.happened", "contact": {"external_id": "k1"}, "properties": {"x": 1}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="evt-2",
    )
    assert conflict.status_code == 409
    assert conflict.json()["type"] == "client_error"
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "attr"),
    [
        ({"contact": {"external_id": "a"}}, "name"),
        ({"name": "has space", "contact": {"external_id": "a"}}, "name"),
        ({"name": "x", "contact": {"external_id": "a"}, "properties": []}, "properties"),
        ({"name": "x", "contact": {"external_id": "a"}, "occurred_at": "yesterday"}, "occurred_at"),
        ({"name": "x", "contact": {"external_id": "a"}, "propertys": {}}, "propertys"),
        ({"name": "x", "contact": {"email": "not-an-email"}}, "contact.email"),
    ],
)
def test_invalid_events_are_400_with_field_paths(api, payload, attr):
    response = api.post("/api/v1/events/", payload, format="json")
    assert response.status_code == 400
    assert attr in [e["attr"] for e in response.json()["errors"]]
    assert Event.objects.count() == 0


def test_batch_gives_each_event_its_own_result(api, django_capture_on_commit_callbacks):
    make_journey()
    events = [
        {"name": "thing.happened", "contact": {"external_id": f"b{i}"}, "idempotency_key": f"b{i}"}
        for i in range(3)
    ]
    events.append({"name": "bad name", "contact": {"external_id": "b9"}})
    events.append(events[0])  # a replay inside the batch
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/events/batch/", {"events": events}, format="json")
    assert response.status_code == 200
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == [202, 202, 202, 400, 200]
    assert Event.objects.count() == 3 and Enrollment.objects.count() == 3


def test_batch_limit(api):
    events = [{"name": "x", "contact": {"external_id": "z"}}] * 1001
    assert api.post("/api/v1/events/batch/", {"events": events}, format="json").status_code == 400


def test_entry_policies():
    once = make_journey("once", trigger="t.once")
    at_a_time = make_journey("once_at_a_time", trigger="t.time")
    every = make_journey("every_time", trigger="t.every")
    contact = ContactFactory()
    now = timezone.now()
    for journey in (once, at_a_time, every):
        assert enrollment_start(journey=journey, contact=contact, event=None, now=now)
    assert enrollment_start(journey=once, contact=contact, event=None, now=now) is None
    assert enrollment_start(journey=at_a_time, contact=contact, event=None, now=now) is None
    assert enrollment_start(journey=every, contact=contact, event=None, now=now)
    # Once the live one ends, once-at-a-time may enter again; once may not.
    Enrollment.objects.filter(journey=at_a_time).update(state="completed")
    Enrollment.objects.filter(journey=once).update(state="completed")
    assert enrollment_start(journey=at_a_time, contact=contact, event=None, now=now)
    assert enrollment_start(journey=once, contact=contact, event=None, now=now) is None


def test_the_database_enforces_one_live_enrollment():
    journey = make_journey()
    contact = ContactFactory()
    fields = {"journey": journey, "contact": contact, "entry_policy": "once_at_a_time"}
    Enrollment.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrollment.objects.create(**fields)
    Enrollment.objects.create(**{**fields, "state": "completed"})  # history is fine


def test_trigger_filter():
    journey = make_journey(trigger="order.completed")
    journey.trigger_filter = {"country": ["FR", "BE"], "store.kind": "online"}
    journey.save()
    contact = ContactFactory()
    event_ingest(
        name="order.completed",
        contact=contact,
        properties={"country": "DE", "store": {"kind": "online"}},
    )
    assert not Enrollment.objects.exists()
    event_ingest(
        name="order.completed",
        contact=contact,
        properties={"country": "FR", "store": {"kind": "online"}},
    )
    assert Enrollment.objects.count() == 1


def test_draft_and_paused_journeys_do_not_enroll():
    make_journey(trigger="t.x").__class__.objects.update(status="paused")
    event_ingest(name="t.x", contact=ContactFactory())
    assert not Enrollment.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_workers_racing_on_one_enrollment_advance_it_once():
    """Two real database connections advance the same due enrollment at the same instant."""
    journey = make_journey()
    enrollment = enrollment_start(
        journey=journey, contact=ContactFactory(), event=None, now=timezone.now()
    )
    barrier = threading.Barrier(2)
    results = []

    def advance():
        try:
            barrier.wait()
            results.append(engine.enrollment_advance(enrollment_id=enrollment.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=advance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["skipped", "waiting"] or results == ["waiting", "waiting"]
    assert StepVisit.objects.filter(enrollment=enrollment).count() == 1
    assert Touchpoint.objects.filter(kind="step_wait").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED needs PostgreSQL")
def test_concurrent_claims_never_share_an_enrollment():
    journey = make_journey(policy="every_time")
    contact = ContactFactory()
    now = timezone.now()
    for _ in range(40):
        enrollment_start(journey=journey, contact=contact, event=None, now=now)
    claimed: list[list[int]] = []
    barrier = threading.Barrier(2)

    def claim():
        try:
            barrier.wait()
            claimed.append(engine.enrollments_claim_due(now=now, limit=25, lease_seconds=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = claimed
    assert not set(first) & set(second)
    assert len(first) + len(second) == 40


def _wait_then_exit_journey(slug="batch", **fields):
    """wait (over at once) -> exit: the scheduler benchmark's journey."""
    journey = Journey.objects.create(
        name=slug, slug=slug, status="active", trigger_event=f"{slug}.go", **fields
    )
    Step.objects.create(
        journey=journey, position=0, key="wait", kind="wait", config={"duration_seconds": 0}
    )
    Step.objects.create(journey=journey, position=1, key="done", kind="exit", config={})
    return journey


def _enroll(journey, n, contact=None):
    now = timezone.now()
    return [
        enrollment_start(journey=journey, contact=contact or ContactFactory(), event=None, now=now)
        for _ in range(n)
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_workers_racing_on_one_batch_advance_each_enrollment_once():
    """Two real connections advance the same 40 enrollments together at the same instant:
    each is advanced by exactly one of them, with one visit and touchpoint per step."""
    journey = _wait_then_exit_journey(entry_policy="every_time")
    ids = [e.pk for e in _enroll(journey, 40, contact=ContactFactory())]
    barrier = threading.Barrier(2)
    results = []

    def advance():
        try:
            barrier.wait()
            results.append(engine.enrollments_advance(enrollment_ids=ids))
        finally:
            connection.close()

    threads = [threading.Thread(target=advance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = results
    assert all(sorted([first[pk], second[pk]]) == ["exited", "skipped"] for pk in ids)
    assert Enrollment.objects.filter(pk__in=ids, state="exited").count() == 40
    assert StepVisit.objects.filter(enrollment_id__in=ids).count() == 80  # wait, done
    for kind in ("step_wait", "step_exit", "journey_exited"):
        assert Touchpoint.objects.filter(kind=kind).count() == 40


def test_a_failing_enrollment_fails_alone_in_a_batch(caplog):
    good = _wait_then_exit_journey()
    broken = Journey.objects.create(name="B", slug="b", status="active", trigger_event="b")
    Step.objects.create(
        journey=broken, position=0, key="route", kind="branch", config={"default": "missing"}
    )
    [first] = _enroll(good, 1)
    [bad] = _enroll(broken, 1)
    [last] = _enroll(good, 1)

    results = engine.enrollments_advance(enrollment_ids=[first.pk, bad.pk, last.pk])

    assert results == {first.pk: "exited", bad.pk: "failed", last.pk: "exited"}
    bad.refresh_from_db()
    assert bad.state == "failed" and "missing" in bad.exit_reason
    # The batch's rolled-back first attempt left nothing behind: one visit per step reached.
    assert StepVisit.objects.filter(enrollment=first).count() == 2
    assert StepVisit.objects.filter(enrollment=last).count() == 2
    assert not StepVisit.objects.filter(enrollment=bad).exists()
    assert Touchpoint.objects.filter(kind="journey_exited").count() == 2
    assert Touchpoint.objects.filter(kind="journey_failed", contact=bad.contact).count() == 1
    assert "one by one" in caplog.text


def test_an_enrollment_ended_earlier_in_the_same_batch_is_not_advanced(simulator):
    """A survey answer is an event: it converts the contact's other enrollment (goal
    survey.answered) inside the batch's transaction, so that one must be read again, not
    advanced from the copy loaded with the batch."""
    TemplateFactory(slug="nps", channel="sms", body="0 to 10?")
    survey = Journey.objects.create(name="S", slug="s", status="active", trigger_event="s")
    Step.objects.create(
        journey=survey, position=0, key="nps", kind="survey", config={"template": "nps"}
    )
    goal = _wait_then_exit_journey(slug="goal", goal_event="survey.answered")
    Step.objects.filter(journey=goal, key="wait").update(config={"duration_seconds": 60})
    contact = ContactFactory()
    now = timezone.now()
    [asking] = _enroll(survey, 1, contact=contact)
    [converting] = _enroll(goal, 1, contact=contact)
    assert engine.enrollment_advance(enrollment_id=asking.pk, now=now) == "waiting"
    assert engine.enrollment_advance(enrollment_id=converting.pk, now=now) == "waiting"
    event_ingest(name="message.replied", contact=contact, properties={"body": "10"})

    later = now + timezone.timedelta(minutes=2)
    results = engine.enrollments_advance(enrollment_ids=[asking.pk, converting.pk], now=later)

    assert results == {asking.pk: "completed", converting.pk: "skipped"}
    converting.refresh_from_db()
    assert converting.state == "converted"
    assert not Touchpoint.objects.filter(kind="journey_exited").exists()


@pytest.fixture
def no_chain():
    from django.core.cache import cache

    cache.delete(tasks.CHAIN_KEY)
    yield cache
    cache.delete(tasks.CHAIN_KEY)


def test_a_backlog_past_one_calls_bound_is_claimed_again_when_its_last_task_ran(settings, no_chain):
    """schedule_due claims at most 10 batches; the last task it queued (eager here) claims
    the rest at once instead of waiting for the next beat, then the chain lets go."""
    settings.SCHEDULER_BATCH_SIZE = 2
    journey = _wait_then_exit_journey()
    ids = [e.pk for e in _enroll(journey, 25)]

    assert tasks.schedule_due() == 20  # this call's own claims; its chain took the other 5

    assert Enrollment.objects.filter(pk__in=ids, state="exited").count() == 25
    assert no_chain.get(tasks.CHAIN_KEY) is None


def test_only_one_chain_claims_ahead_of_the_beat(settings, no_chain):
    settings.SCHEDULER_BATCH_SIZE = 2
    no_chain.set(tasks.CHAIN_KEY, 1)  # another worker's chain is running
    journey = _wait_then_exit_journey()
    ids = [e.pk for e in _enroll(journey, 25)]

    assert tasks.schedule_due() == 20

    assert Enrollment.objects.filter(pk__in=ids, state="exited").count() == 20
    assert no_chain.get(tasks.CHAIN_KEY) == 1


def test_queries_per_advanced_enrollment_are_bounded(django_assert_max_num_queries, simulator):
    TemplateFactory(slug="hello", channel="sms", body="Hello {{ contact.first_name }}")
    journey = Journey.objects.create(name="Q", slug="q", status="active", trigger_event="q")
    Step.objects.create(
        journey=journey,
        position=0,
        key="send",
        kind="send",
        config={"channel": "sms", "template": "hello", "fallback_channels": []},
    )
    Step.objects.create(
        journey=journey, position=1, key="wait", kind="wait", config={"duration_seconds": 60}
    )
    enrollments = [
        enrollment_start(journey=journey, contact=ContactFactory(), event=None, now=timezone.now())
        for _ in range(3)
    ]
    for enrollment in enrollments:
        # send step + wait step, with every touchpoint, visit and message row
        with django_assert_max_num_queries(19):
            assert engine.enrollment_advance(enrollment_id=enrollment.pk) == "waiting"
    assert Enrollment.objects.filter(state="waiting").count() == 3
    # Together (the scheduler's path): 9 per batch (savepoint and release, lock, journeys,
    # steps, contacts, then one UPDATE of the enrollments, one INSERT of the touchpoints, one
    # of the visits) + 8 per enrollment (template, consent, message, JourneyMessage...);
    # growth per enrollment is caught.
    for n in (3, 6):
        ids = [e.pk for e in _enroll(journey, n)]
        with django_assert_max_num_queries(9 + 8 * n):
            results = engine.enrollments_advance(enrollment_ids=ids)
        assert set(results.values()) == {"waiting"}
        for enrollment in Enrollment.objects.filter(pk__in=ids).select_related("current_step"):
            # the rows written in one statement hold what each enrollment's save would
            assert enrollment.current_step.key == "wait"
            assert enrollment.next_run_at == enrollment.wait_until
            assert enrollment.wait_until.isoformat() == enrollment.context["step"]["until"]
            assert enrollment.context["steps"]["send"]["outcome"] == "sent"
            assert enrollment.updated_at > enrollment.entered_at


def test_queries_per_batch_of_waits_that_end(django_assert_max_num_queries, caplog):
    """The scheduler benchmark's journey: the same 8 queries for a batch of any size
    (savepoint and release, lock, journeys, steps, one UPDATE of the enrollments, one INSERT
    of the touchpoints, one of the visits), on the batch path itself, not its fallback."""
    journey = _wait_then_exit_journey()
    # SQLite (the embedded default) updates the rows with bulk_update: one query more.
    limit = 8 if connection.vendor == "postgresql" else 9
    for n in (1, 10, 50):
        ids = [e.pk for e in _enroll(journey, n)]
        with django_assert_max_num_queries(limit):
            results = engine.enrollments_advance(enrollment_ids=ids)
        assert set(results.values()) == {"exited"}
    ended = Enrollment.objects.filter(state="exited", next_run_at=None, ended_at__isnull=False)
    assert ended.filter(exit_reason="exit step done", context__step__key="done").count() == 61
    assert StepVisit.objects.count() == 2 * 61
    assert Touchpoint.objects.filter(kind="journey_exited").count() == 61
    assert "one by one" not in caplog.text


def test_ingest_queries_do_not_grow_with_history(django_assert_max_num_queries):
    make_journey(policy="every_time", trigger="q.ingest")
    contact = ContactFactory()
    for _ in range(5):
        event_ingest(name="q.ingest", contact=contact)
    # (15: the last marks the contact for its live segments, one INSERT; one looks for live
    # enrollments whose journey exits on this event)
    with django_assert_max_num_queries(15):
        event_ingest(name="q.ingest", contact=contact)
