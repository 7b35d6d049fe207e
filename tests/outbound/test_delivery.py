"""Sending webhooks to a real local endpoint: Standard Webhooks signatures (checked by the
spec-written verifier in conftest), retries with backoff, permanent failures, disabling, and
the guarantees that a delivery is sent once per attempt and never after it is finished."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.utils import timezone

from outbound import selectors, services, signing, tasks
from outbound.delivery import deliveries_claim_due, retry_after_seconds
from outbound.models import WebhookDelivery, WebhookSubscription, generate_secret
from outbound.payloads import body_bytes

from .conftest import dispatch_at, spec_verify

pytestmark = pytest.mark.django_db


def attempts(delivery: WebhookDelivery) -> list[tuple[int | None, str]]:
    return [(a.status_code, a.error) for a in delivery.attempt_log.order_by("attempted_at", "id")]


# --- Signing ---------------------------------------------------------------------------


def test_signed_request_verifies_with_the_spec_and_a_tampered_body_does_not(
    receiver, subscribe, ping
):
    subscription = subscribe("message.replied")

    delivery = ping(subscription)

    [request] = receiver.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert delivery.webhook_id.startswith("msg_") and "." not in delivery.webhook_id
    assert abs(int(request.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    assert request.headers["webhook-signature"].startswith("v1,")
    assert spec_verify(secret=subscription.secret, headers=request.headers, body=request.body)
    tampered = request.body.replace(b"webhook.test", b"webhook.tesT")
    assert tampered != request.body
    assert not spec_verify(secret=subscription.secret, headers=request.headers, body=tampered)
    assert not spec_verify(secret=generate_secret(), headers=request.headers, body=request.body)
    other_id = {**request.headers, "webhook-id": "msg_other"}
    assert not spec_verify(secret=subscription.secret, headers=other_id, body=request.body)
    # The body is the stored payload, in the Standard Webhooks envelope.
    assert request.json == delivery.payload
    assert request.json["type"] == "webhook.test"
    assert request.json["timestamp"].endswith("Z")
    assert request.json["data"]["subscription"] == {"id": subscription.pk}
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.finished_at is not None
    [attempt] = delivery.attempt_log.all()
    assert (attempt.status_code, attempt.response_body, attempt.error) == (200, "answer 200", "")


def test_signature_matches_the_reference_vector():
    # The published vector of the Standard Webhooks reference libraries.
    signature = signing.sign(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_standard_webhooks_secrets_and_unique(db):
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64


def test_body_bytes_are_the_same_on_every_retry():
    payload = {"type": "t", "timestamp": "2026-01-01T00:00:00Z", "data": {"b": 1, "a": "é"}}
    reordered = json.loads(json.dumps({"data": {"a": "é", "b": 1}, "type": "t", **payload}))
    assert body_bytes(payload) == body_bytes(reordered)
    assert json.loads(body_bytes(payload)) == payload


# --- Retries ---------------------------------------------------------------------------


def test_500s_are_retried_with_backoff_then_succeed(receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    receiver.respond(500, 503)
    start = timezone.now()

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    # 5 s, plus up to 20 % jitter
    assert start + dt.timedelta(seconds=5) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + dt.timedelta(seconds=6.1)
    assert dispatch_at(start + dt.timedelta(seconds=2)) == 0  # not due yet
    assert len(receiver.requests) == 1

    assert dispatch_at(start + dt.timedelta(seconds=7)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 2, 503)
    second_wait = delivery.next_attempt_at - (start + dt.timedelta(seconds=7))
    assert dt.timedelta(seconds=300) <= second_wait <= dt.timedelta(seconds=361)

    assert dispatch_at(start + dt.timedelta(minutes=7)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert delivery.next_attempt_at is None
    assert [a[0] for a in attempts(delivery)] == [500, 503, 200]
    assert all(a.duration_ms >= 0 for a in delivery.attempt_log.all())
    # Every try carries the same webhook-id and the same bytes, each freshly signed.
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert spec_verify(
            secret=subscription.secret,
            headers=request.headers,
            body=request.body,
            tolerance_seconds=3600,
        )
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0


def test_a_timeout_is_retried_and_its_latency_recorded(receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    receiver.respond("timeout")
    start = timezone.now()

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.next_attempt_at > timezone.now()
    [timed_out] = delivery.attempt_log.all()
    assert timed_out.status_code is None
    assert timed_out.error == "timed out after 0.5 s"
    assert timed_out.duration_ms >= 500

    dispatch_at(start + dt.timedelta(seconds=8))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert attempts(delivery) == [(None, "timed out after 0.5 s"), (200, "")]


def test_a_refused_connection_is_retried_and_keeps_no_body(receiver, subscribe, ping, settings):
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1:9"]
    subscription = subscribe("message.sent", url="http://127.0.0.1:9/hooks")

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts) == ("pending", 1)
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error.startswith("ConnectionError")
    assert attempt.response_body == ""


def test_retry_after_on_429_is_honoured(receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    receiver.respond((429, {"Retry-After": "120"}))
    start = timezone.now()

    delivery = ping(subscription)

    assert delivery.last_status_code == 429
    assert delivery.next_attempt_at >= start + dt.timedelta(seconds=120)
    dispatch_at(start + dt.timedelta(seconds=60))
    assert len(receiver.requests) == 1
    dispatch_at(start + dt.timedelta(seconds=125))
    assert len(receiver.requests) == 2


def test_retry_after_accepts_seconds_and_http_dates():
    now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("30", now=now) == 30
    assert retry_after_seconds("Mon, 23 Nov 2026 10:02:00 GMT", now=now) == 120
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None, now=now) is None


def test_retries_run_out_and_the_delivery_fails(receiver, subscribe, ping, settings):
    settings.OUTBOUND_WEBHOOK_RETRY_DELAYS = [5, 60]
    subscription = subscribe("message.sent")
    receiver.default = 502
    start = timezone.now()

    delivery = ping(subscription)
    dispatch_at(start + dt.timedelta(seconds=10))
    dispatch_at(start + dt.timedelta(seconds=100))
    dispatch_at(start + dt.timedelta(days=2))

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert [a[0] for a in attempts(delivery)] == [502, 502, 502]
    assert len(receiver.requests) == 3
    subscription.refresh_from_db()
    assert (subscription.consecutive_failures, subscription.is_active) == (1, True)


# --- Permanent failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer", [404, 400, 401, (301, {"Location": "http://127.0.0.1:9/elsewhere"})]
)
def test_other_4xx_and_redirects_fail_at_once(receiver, subscribe, ping, answer):
    subscription = subscribe("message.sent")
    receiver.respond(answer)
    code = answer[0] if isinstance(answer, tuple) else answer

    delivery = ping(subscription)
    dispatch_at(timezone.now() + dt.timedelta(days=2))

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, code)
    assert delivery.next_attempt_at is None and delivery.finished_at is not None
    assert len(receiver.requests) == 1  # no retry, and the redirect was not followed
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.consecutive_failures) == (True, 1)


def test_410_gone_fails_at_once_and_disables_the_subscription(receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    receiver.respond(410)

    delivery = ping(subscription)
    dispatch_at(timezone.now() + dt.timedelta(days=2))

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 410)
    assert len(receiver.requests) == 1
    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.disabled_reason == "disabled because the endpoint answered HTTP 410 Gone"


# --- Disabling -------------------------------------------------------------------------


def test_subscription_is_disabled_after_n_failed_deliveries_and_sends_nothing_more(
    receiver, subscribe, ping, settings, django_capture_on_commit_callbacks
):
    settings.OUTBOUND_WEBHOOK_DISABLE_AFTER = 3
    settings.OUTBOUND_WEBHOOK_RETRY_DELAYS = []  # each delivery fails on its first 500
    subscription = subscribe("message.sent")
    receiver.default = 500
    ping(subscription)
    ping(subscription)
    # A delivery still waiting (its kick never ran) when the subscription is disabled.
    waiting = services.ping_send(subscription=subscription)
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.consecutive_failures) == (True, 2)

    ping(subscription)

    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.consecutive_failures == 3
    assert subscription.disabled_reason == (
        "disabled after 3 consecutive failed deliveries; last: HTTP 500 Internal Server Error"
    )
    assert subscription.disabled_at is not None
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == ("failed", 0)
    sent = len(receiver.requests)
    assert sent == 3
    dispatch_at(timezone.now() + dt.timedelta(days=2))
    assert tasks.deliver_webhook(waiting.pk, 0) == "already failed"
    with django_capture_on_commit_callbacks(execute=True):
        published = services.event_publish(
            event_type="message.sent", build=lambda: {"type": "message.sent"}
        )
    assert published == []
    assert len(receiver.requests) == sent


def test_a_success_resets_the_failure_count(receiver, subscribe, ping, settings):
    settings.OUTBOUND_WEBHOOK_RETRY_DELAYS = []
    subscription = subscribe("message.sent")
    receiver.respond(500, 500)
    ping(subscription)
    ping(subscription)
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 2

    ping(subscription)

    subscription.refresh_from_db()
    assert (subscription.consecutive_failures, subscription.is_active) == (0, True)


# --- Exactly one send per attempt ------------------------------------------------------


def test_a_finished_delivery_is_never_sent_again(receiver, subscribe, ping):
    delivery = ping(subscribe("message.sent"))
    assert delivery.status == "succeeded"

    assert tasks.deliver_webhook(delivery.pk, 0) == "already succeeded"
    assert tasks.deliver_webhook(delivery.pk, 1) == "already succeeded"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert dispatch_at(timezone.now() + dt.timedelta(days=1)) == 0

    assert len(receiver.requests) == 1


def test_a_duplicate_task_for_the_same_attempt_sends_nothing(receiver, subscribe):
    subscription = subscribe("message.sent")
    delivery = services.ping_send(subscription=subscription)  # kick not run
    receiver.default = 500

    assert tasks.deliver_webhook(delivery.pk, 0) == "retrying"
    assert tasks.deliver_webhook(delivery.pk, 0) == "stale"  # a redelivered copy

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_a_lost_kick_is_sent_by_the_dispatcher_after_its_lease(receiver, subscribe, settings):
    settings.OUTBOUND_WEBHOOK_LEASE_SECONDS = 60
    delivery = services.ping_send(subscription=subscribe("message.sent"))  # kick not run
    now = timezone.now()

    assert dispatch_at(now + dt.timedelta(seconds=30)) == 0
    assert dispatch_at(now + dt.timedelta(seconds=61)) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert len(receiver.requests) == 1


def test_a_claimed_delivery_is_not_claimed_again_within_its_lease(subscribe):
    delivery = services.ping_send(subscription=subscribe("message.sent"))
    later = timezone.now() + dt.timedelta(hours=1)

    assert deliveries_claim_due(now=later, limit=10, lease_seconds=60) == [(delivery.pk, 0)]
    assert deliveries_claim_due(now=later, limit=10, lease_seconds=60) == []
    assert deliveries_claim_due(
        now=later + dt.timedelta(seconds=61), limit=10, lease_seconds=60
    ) == [(delivery.pk, 0)]


def test_deleting_a_subscription_removes_its_deliveries(receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    delivery = ping(subscription)
    subscription.delete()
    assert not WebhookDelivery.objects.filter(pk=delivery.pk).exists()
    assert tasks.deliver_webhook(delivery.pk, 1) == "missing"


# --- Publishing is cheap when nobody listens -------------------------------------------


def _nobody_builds():
    raise AssertionError("the payload is not built when nobody subscribes")


def test_publishing_without_subscribers_reads_the_table_once(
    db, django_assert_num_queries, subscribe
):
    subscribe("contact.subscribed")  # another type only
    WebhookSubscription.objects.create(url="https://x.example/h", event_types=["message.sent"])
    WebhookSubscription.objects.filter(url="https://x.example/h").update(is_active=False)

    with django_assert_num_queries(1):
        assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    # Every later status change in this process: no query at all.
    with django_assert_num_queries(0):
        for _ in range(3):
            assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []


def test_a_subscription_saved_in_this_process_gets_the_next_event(db, subscribe):
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    subscription = subscribe("message.sent")
    payload = {"type": "message.sent", "timestamp": "2026-11-23T10:00:00Z", "data": {}}
    [delivery] = services.event_publish(event_type="message.sent", build=lambda: payload)
    assert delivery.subscription_id == subscription.pk
    # Re-enabling one (a save, from the API, the admin or its action) is seen at once too.
    services.subscription_disable(subscription_id=subscription.pk, reason="test")
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    subscription.refresh_from_db()
    services.subscription_enable(subscription=subscription)
    assert len(services.event_publish(event_type="message.sent", build=lambda: payload)) == 1


def test_a_subscription_saved_by_another_process_gets_events_within_the_cache_time(
    db, settings, monkeypatch
):
    settings.OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS = 1.0
    now = [1000.0]
    monkeypatch.setattr(selectors, "_clock", lambda: now[0])
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    # Another process's write sends no signal here: a queryset update stands in for it.
    subscription = WebhookSubscription.objects.create(
        url="https://x.example/h", event_types=["message.sent"], is_active=False
    )
    selectors.forget_subscribed_event_types()
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    WebhookSubscription.objects.filter(pk=subscription.pk).update(is_active=True)

    now[0] += 0.9  # still inside the documented delay: this process has not seen it yet
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []
    now[0] += 0.2  # past it
    payload = {"type": "message.sent", "timestamp": "2026-11-23T10:00:00Z", "data": {}}
    [delivery] = services.event_publish(event_type="message.sent", build=lambda: payload)
    assert delivery.subscription_id == subscription.pk


def test_a_stale_cache_never_sends_to_a_removed_subscription(db, subscribe):
    subscription = subscribe("message.sent")
    assert "message.sent" in selectors.subscribed_event_types()
    # Deleted by another process (no signal here): the cache still lists the type, but the
    # publisher reads the subscriptions themselves and finds none.
    WebhookSubscription.objects.filter(pk=subscription.pk).update(is_active=False)
    assert services.event_publish(event_type="message.sent", build=_nobody_builds) == []


def test_a_read_racing_a_commit_is_forgotten_at_the_commit(
    db, subscribe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        subscription = subscribe("message.sent")
        # Another thread of this process read the table before this transaction committed
        # (it could not see the new row) and kept that answer after the save had forgotten.
        selectors._subscribed = (selectors._clock(), frozenset())
    payload = {"type": "message.sent", "timestamp": "2026-11-23T10:00:00Z", "data": {}}
    [delivery] = services.event_publish(event_type="message.sent", build=lambda: payload)
    assert delivery.subscription_id == subscription.pk


def test_publishing_to_subscribers_is_a_fixed_number_of_queries(
    db, django_assert_num_queries, subscribe
):
    for _ in range(3):
        subscribe("message.sent")
    built = []

    def build():
        built.append(1)
        return {"type": "message.sent", "timestamp": "2026-11-23T10:00:00Z", "data": {}}

    # the subscribed types (once per process), the subscriptions, one insert for all
    # deliveries (the kick runs after commit)
    with django_assert_num_queries(3):
        deliveries = services.event_publish(event_type="message.sent", build=build)

    assert len(deliveries) == 3 and built == [1]
    assert all(d.pk and d.status == "pending" for d in deliveries)
    with django_assert_num_queries(2):
        assert len(services.event_publish(event_type="message.sent", build=build)) == 3
