"""SIGKILL worker processes (prefork children, prefork parents, threads workers) again and again
while N journey sends run: every message ends in exactly one final state, the provider gets
each at most once, a send whose outcome the kill made ambiguous is settled by the provider's
status callback or parked as `unknown` (never resent), and no enrollment loses its message.
Reconciliation (on the test clock) then settles every `unknown` one: none is left."""

from __future__ import annotations

import random
import socket
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from channels_app.providers.registry import reset_providers
from journeys.models import Enrollment, Event, JourneyMessage
from messaging.models import Contact, Message
from messaging.reconcile import NOT_ACCEPTED, unknown_messages_reconcile
from messaging.services import message_create

from .conftest import (
    FAULTS_N,
    IN_FLIGHT,
    Background,
    audit,
    budget,
    children_of,
    db_state,
    event_payload,
    explain_unreconciled,
    make_send_journey,
    phone,
    purge_broker,
    scaled_timeout,
    settled_by_callback,
    summary,
    touchline_env,
    wait_for_callbacks,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(scaled_timeout(240, 0.5)),
]

BATCH = 100


def test_sigkill_workers_during_journey_sends(live_server, settings, api_key, cluster, simulators):
    n = FAULTS_N
    settings.PUBLIC_BASE_URL = live_server.url
    # Provider latency widens the window between the claim and the commit of `sent`, so kills
    # land mid-call: those are the ambiguous sends.
    sim = simulators(live_server.url, callbacks=True, latency_ms=120)
    journey = make_send_journey()
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(sim, public_base_url=live_server.url)
    cluster.beat(env)
    workers = [
        cluster.worker(env, pool="prefork", concurrency=3),
        cluster.worker(env, pool="threads", concurrency=4),
    ]
    cluster.wait_ready(*workers)

    headers = {"Authorization": f"Api-Key {api_key}"}

    def load() -> None:
        # N contacts enter the journey through the events batch API, in batches, while the
        # workers are being killed.
        for start in range(0, n, BATCH):
            events = [event_payload(i) for i in range(start, min(start + BATCH, n))]
            response = requests.post(
                f"{live_server.url}/api/v1/events/batch/",
                json={"events": events},
                headers=headers,
                timeout=120,
            )
            assert response.status_code == 200, response.text[:2000]
            statuses = {r["status"] for r in response.json()["results"]}
            assert statuses == {202}, response.text[:2000]
            time.sleep(0.2)

    loader = Background(load, "event-loader")
    loader.start()

    def done() -> bool:
        if loader.is_alive():
            return False
        # The API answers before a worker applies the events: none may be left unapplied.
        if Event.objects.filter(processed_at__isnull=True).exists():
            return False
        live = Enrollment.objects.filter(journey=journey, state__in=Enrollment.LIVE_STATES)
        return not live.exists() and not Message.objects.filter(status__in=IN_FLIGHT).exists()

    # Kill something every 0.8–2 s until the load is through (and at least 8 times): a
    # prefork child (its parent replaces it), a prefork parent alone (its children are
    # orphaned), or a whole worker (parent and children at once; a threads worker is one
    # process). A supervisor restarts dead workers, as systemd or Kubernetes would.
    max_kills = max(8, n // 25)
    kinds = {"child": 0, "parent": 0, "group": 0}

    def supervise() -> None:
        for pool, concurrency in (("prefork", 3), ("threads", 4)):
            if not cluster.live_workers(pool):
                cluster.worker(env, pool=pool, concurrency=concurrency)

    deadline = time.monotonic() + budget(60, 0.2)
    while cluster.kills < max_kills and time.monotonic() < deadline:
        time.sleep(random.uniform(0.8, 2.0))
        if cluster.kills >= 8 and done():
            break
        prefork = cluster.live_workers("prefork", ready=True)
        threads = cluster.live_workers("threads", ready=True)
        if prefork and (not threads or random.random() < 0.6):
            victim = random.choice(prefork)
            choice = random.choices(["child", "parent", "group"], weights=[2, 1, 1])[0]
        elif threads:
            victim, choice = random.choice(threads), "group"  # one process: all of it
        else:
            continue
        if choice == "child":
            kids = children_of(victim.pid)
            if not kids:
                continue
            cluster.sigkill(random.choice(kids))
        elif choice == "parent":
            cluster.sigkill(victim.pid)  # its children live on as orphans
            victim.popen.wait(timeout=10)
        else:
            cluster.sigkill_group(victim)
        kinds[choice] += 1
        supervise()
    supervise()
    loader.join_checked(timeout=budget(60, 0.1))

    # Recovery: the scheduler re-claims enrollments whose task died, the sweeper re-queues
    # lost `queued` messages and parks stale `sending` ones as `unknown`.
    wait_until(
        done,
        timeout=budget(90, 0.2),
        what="every enrollment to finish its send",
        state=lambda: db_state(journey),
    )
    # Status callbacks of everything the provider accepted settle.
    unsettled = wait_for_callbacks(sim, timeout=30)

    enrollments = Enrollment.objects.filter(journey=journey)
    assert enrollments.count() == n
    by_state = {state: enrollments.filter(state=state).count() for state in ("completed", "failed")}
    messages = Message.objects.filter(journey_link__journey=journey)
    result = audit(sim)
    linked = JourneyMessage.objects.filter(journey=journey)
    lost = n - linked.values("enrollment").distinct().count() + result.in_flight
    ids = list(result.messages)
    unknown = result.statuses["unknown"]
    summary(
        "worker_kills",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=lost,
        unknown=unknown,
        kills=cluster.kills,
        child_kills=kinds["child"],
        parent_kills=kinds["parent"],
        group_kills=kinds["group"],
        settled_by_callback=settled_by_callback(ids),
        unreconciled=len(result.unreconciled()),
        failed=result.statuses["failed"],
        enrollments=n,
    )
    assert by_state == {"completed": n, "failed": 0}, by_state
    assert messages.count() == n, "one message per enrollment"
    assert linked.count() == n and linked.values("enrollment").distinct().count() == n
    assert result.problems() == []
    assert result.duplicates == 0
    assert lost == 0
    assert result.sent + unknown == n, result.statuses
    for message in messages.filter(status="unknown"):
        assert "status callback" in message.error_message, message.error_message
    # A send the kill made ambiguous but the provider did accept is settled by its status
    # callback, never left `unknown` (and never resent).
    unreconciled = result.unreconciled()
    assert unreconciled == [], (
        f"{len(unreconciled)} accepted messages left unknown; the provider never called back "
        f"for {len(unsettled)}:\n{explain_unreconciled(sim, unreconciled)}"
    )
    assert_reconciliation_leaves_no_unknown(settings, sim, messages, n)


def assert_reconciliation_leaves_no_unknown(settings, sim, messages, n: int) -> None:
    """The beat's reconciliation, run here on the test clock: once due, every `unknown` message
    is looked up at the provider (the simulator's Twilio listing); those it never got are not
    settled early, and fail "not accepted by provider" at the final deadline. None is resent."""
    settings.TWILIO_API_BASE_URL = sim.url
    reset_providers()
    unknown_ids = [str(pk) for pk in messages.filter(status="unknown").values_list("pk", flat=True)]
    requests_before = audit(sim).requests
    due = timezone.now() + timedelta(seconds=settings.UNKNOWN_RECONCILE_AFTER_SECONDS)
    first = unknown_messages_reconcile(now=due, limit=n)
    assert sum(first.values()) == len(unknown_ids), first
    # The provider never got them (their callbacks would have settled them): not found yet.
    assert set(first) <= {"waiting"}, first
    final = timezone.now() + timedelta(seconds=settings.UNKNOWN_FINAL_DEADLINE_SECONDS)
    second = unknown_messages_reconcile(now=final, limit=n)
    after = audit(sim)
    summary(
        "worker_kills_reconciled",
        unknown_before=len(unknown_ids),
        unknown_after=after.statuses["unknown"],
        not_accepted=second.get("not_accepted", 0),
        failed=after.statuses["failed"],
    )
    assert after.statuses["unknown"] == 0, after.statuses
    assert second == ({"not_accepted": len(unknown_ids)} if unknown_ids else {}), second
    assert after.problems() == []
    assert after.requests == requests_before, "reconciliation resent nothing"
    assert after.sent + after.statuses["failed"] == n, after.statuses
    for message in messages.filter(pk__in=unknown_ids):
        assert message.status == "failed", message.status
        assert message.error_message.startswith(NOT_ACCEPTED), message.error_message
        assert message.touchpoints.filter(kind="reconciled").exists()


def test_kill_mid_provider_call_is_settled_by_the_status_callback(
    live_server, settings, cluster, simulators
):
    """Deterministic version of the ambiguous case: every worker process dies while the
    provider holds its requests (3 s of latency). The provider accepted them all, so their
    status callbacks (carrying our id) settle them as delivered; none is sent again."""
    count = 6
    settings.PUBLIC_BASE_URL = live_server.url
    sim = simulators(live_server.url, callbacks=True, latency_ms=3000)
    purge_broker(settings.CELERY_BROKER_URL)
    env = touchline_env(sim, public_base_url=live_server.url)
    cluster.beat(env)
    worker = cluster.worker(env, pool="prefork", concurrency=count)
    cluster.wait_ready(worker)
    ids = []
    for i in range(count):
        contact = Contact.objects.create(external_id=f"mid-{i}", phone=phone(i), first_name="M")
        message, _ = message_create(contact=contact, channel="sms", body=f"Mid-call {i}")
        ids.append(str(message.pk))
    wait_until(
        lambda: Message.objects.filter(pk__in=ids, status="sending").count() == count,
        timeout=30,
        what="every message to be claimed and in its provider call",
    )
    time.sleep(1.5)  # the requests are in the provider's hands
    for child in children_of(worker.pid):
        cluster.sigkill(child)
    # The parent replaces its children and gets the tasks back (reject_on_worker_lost): they
    # find their messages `sending` and leave them alone; the sweeper parks any still
    # `sending` after 5 s as `unknown`; the callbacks settle them.
    wait_for_callbacks(sim, timeout=20)
    wait_until(
        lambda: not Message.objects.filter(pk__in=ids, status__in=IN_FLIGHT).exists(),
        timeout=30,
        what="the killed sends to leave `sending`",
        state=lambda: db_state(),
    )
    time.sleep(1)
    result = audit(sim, Message.objects.filter(pk__in=ids))
    summary(
        "kill_mid_provider_call",
        sent=result.sent,
        duplicates=result.duplicates,
        lost=result.in_flight,
        unknown=result.statuses["unknown"],
        kills=cluster.kills,
        provider_accepted=len(result.requests),
        settled_by_callback=settled_by_callback(ids),
        unreconciled=len(result.unreconciled()),
    )
    assert len(result.requests) == count, "the provider got every request exactly once"
    assert result.problems() == []
    unreconciled = result.unreconciled()
    assert unreconciled == [], (
        f"{len(unreconciled)} of {count} accepted messages left unknown: the provider never "
        f"called back\n{explain_unreconciled(sim, unreconciled)}"
    )
    assert result.statuses["delivered"] == count, result.statuses


def test_kill_mid_call_to_a_provider_that_never_got_it_is_failed_by_reconciliation(
    live_server, settings, cluster, simulators
):
    """Deterministic version of the case reconciliation exists for: every worker process dies
    while its request is in flight to a provider that will never record it (a black hole).
    The sweeper parks them `unknown`; no callback ever comes; reconciliation asks the provider
    (the simulator's Twilio listing: not there), waits, and at the final deadline fails them
    "not accepted by provider". Nothing is sent, then or later."""
    count = 4
    settings.PUBLIC_BASE_URL = live_server.url
    sim = simulators(live_server.url, callbacks=True)
    purge_broker(settings.CELERY_BROKER_URL)
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        env = touchline_env(
            sim,
            public_base_url=live_server.url,
            TWILIO_API_BASE_URL=f"http://127.0.0.1:{black_hole.getsockname()[1]}",
            PROVIDER_TIMEOUT_SECONDS=30,  # in flight until killed (and fits the soft limit)
        )
        cluster.beat(env)
        worker = cluster.worker(env, pool="prefork", concurrency=count)
        cluster.wait_ready(worker)
        ids = []
        for i in range(count):
            contact = Contact.objects.create(
                external_id=f"hole-{i}", phone=phone(i), first_name="H"
            )
            message, _ = message_create(contact=contact, channel="sms", body=f"Lost {i}")
            ids.append(str(message.pk))
        messages = Message.objects.filter(pk__in=ids)
        wait_until(
            lambda: messages.filter(status="sending").count() == count,
            timeout=30,
            what="every message to be claimed and in its provider call",
        )
        for child in children_of(worker.pid):
            cluster.sigkill(child)
        wait_until(
            lambda: messages.filter(status="unknown").count() == count,
            timeout=30,
            what="the sweeper to park the killed sends as unknown",
            state=lambda: db_state(),
        )
    assert audit(sim, messages).requests == {}, "the provider never got them"
    assert_reconciliation_leaves_no_unknown(settings, sim, messages, count)
    assert messages.filter(status="failed", error_code="not_accepted").count() == count
