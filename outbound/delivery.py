"""Sending webhooks: claim an attempt, POST the signed payload, record the attempt, then
succeed, schedule a retry or fail (saleor's delivery + attempt rows; Standard Webhooks'
status handling). The dispatcher claims due retries; long waits live in next_attempt_at."""

from __future__ import annotations

import datetime as dt
import email.utils
import http
import logging
import random
import time
from dataclasses import dataclass

import urllib3
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import conf, egress, encryption, payloads, services, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

PENDING = WebhookDelivery.Status.PENDING
USER_AGENT = "Touchline-Webhooks/1.0"
# 408 and 429 say "later", 5xx says "not now"; any other answer will not change on a retry.
RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Outcome:
    """What one HTTP attempt came to."""

    status_code: int | None = None
    duration_ms: int = 0
    response_body: str = ""
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def summary(self) -> str:
        if self.status_code is None:
            return self.error
        try:
            phrase = http.HTTPStatus(self.status_code).phrase
        except ValueError:
            phrase = ""
        return f"HTTP {self.status_code} {phrase}".strip()


def retry_after_seconds(value: str | None, *, now: dt.datetime) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _post(*, url: str, body: bytes, headers: dict[str, str], now: dt.datetime) -> Outcome:
    timeout = float(conf.get("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS"))
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    # Every error below happened before an HTTP answer: the attempt keeps the reason, never a
    # body. Redirects are not followed (Standard Webhooks: a 3xx is a failure, fix the URL).
    try:
        answer, _address = egress.post(
            url=url, body=body, headers={**headers, "user-agent": USER_AGENT}, timeout=timeout
        )
    except egress.Refused as exc:
        # Not retried: the name points somewhere webhooks may not go; a retry would only give
        # a rebinding attacker another try. Fix the URL or the allow-list.
        return Outcome(duration_ms=elapsed(), error=f"refused: {exc}"[:1000])
    except egress.Unresolved as exc:
        return Outcome(duration_ms=elapsed(), error=f"DNS: {exc}"[:1000], retryable=True)
    except urllib3.exceptions.NewConnectionError as exc:
        # (a subclass of ConnectTimeoutError in urllib3 2, so it is caught first)
        return Outcome(
            duration_ms=elapsed(), error=f"ConnectionError: {exc}"[:1000], retryable=True
        )
    except urllib3.exceptions.TimeoutError:
        return Outcome(
            duration_ms=elapsed(), error=f"timed out after {timeout:g} s", retryable=True
        )
    except ValueError as exc:
        # A request http.client will not send (e.g. a control character in the path of a
        # URL stored without validation): retrying cannot help.
        return Outcome(duration_ms=elapsed(), error=f"invalid request: {exc}"[:1000])
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        # TLS failures, a dropped connection, a garbled answer: the network, so retried.
        return Outcome(
            duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:1000], retryable=True
        )
    code = answer.status
    retryable = code >= 500 or code in RETRYABLE_4XX
    return Outcome(
        status_code=code,
        duration_ms=elapsed(),
        response_body=answer.excerpt,
        retryable=retryable,
        retry_after=retry_after_seconds(answer.headers.get("Retry-After"), now=now)
        if retryable
        else None,
    )


def retry_delay(*, attempt: int, outcome: Outcome) -> float | None:
    """Seconds until the next try after `attempt` (1-based) failed, or None when spent."""
    delays = list(conf.get("OUTBOUND_WEBHOOK_RETRY_DELAYS"))
    if not outcome.retryable or attempt > len(delays):
        return None
    base = float(delays[attempt - 1])
    # Jitter only ever lengthens the wait, so retries from one outage spread out.
    delay = base + random.uniform(0, base * 0.2)
    if outcome.retry_after is not None:
        cap = float(conf.get("OUTBOUND_WEBHOOK_MAX_RETRY_AFTER_SECONDS"))
        delay = max(delay, min(outcome.retry_after, cap))
    return delay


def delivery_attempt(*, delivery_id: int, attempt: int = 0) -> str:
    """Make attempt number `attempt + 1` of a delivery, if nobody made it yet.

    `attempt` is how many attempts the caller saw made: claiming moves the counter on with a
    conditional UPDATE, so a duplicate or redelivered task finds it moved and sends nothing.
    """
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None:
        return "missing"
    if delivery.status != PENDING:
        return "already " + delivery.status
    if delivery.attempts != attempt:
        return "stale"
    subscription = delivery.subscription
    now = timezone.now()
    if not subscription.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=PENDING).update(
            status=WebhookDelivery.Status.FAILED, finished_at=now, next_attempt_at=None
        )
        return "subscription disabled"
    lease = dt.timedelta(seconds=conf.get("OUTBOUND_WEBHOOK_LEASE_SECONDS"))
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=PENDING, attempts=attempt
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + lease)
    if not claimed:
        return "stale"
    body = payloads.body_bytes(delivery.payload)
    try:
        secret = subscription.secret
    except encryption.InvalidToken:
        outcome = Outcome(
            error="the signing secret cannot be decrypted with OUTBOUND_SECRET_KEYS "
            "(a key was removed before rotate_webhook_secrets ran?)"
        )
    else:
        headers = signing.headers(
            secret=secret,
            webhook_id=delivery.webhook_id,
            timestamp=int(now.timestamp()),
            body=body,
        )
        outcome = _post(url=subscription.url, body=body, headers=headers, now=now)
    return _record(
        delivery=delivery, subscription=subscription, number=attempt + 1, outcome=outcome, at=now
    )


def _record(
    *,
    delivery: WebhookDelivery,
    subscription: WebhookSubscription,
    number: int,
    outcome: Outcome,
    at: dt.datetime,
) -> str:
    now = timezone.now()
    # Only the claimant of this attempt may settle it; a row failed meanwhile (subscription
    # disabled) stays failed.
    mine = WebhookDelivery.objects.filter(pk=delivery.pk, status=PENDING, attempts=number)
    try:
        with transaction.atomic():
            WebhookAttempt.objects.create(
                delivery=delivery,
                attempted_at=at,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                response_body=outcome.response_body,
                error=outcome.error,
            )
            if outcome.ok:
                mine.update(
                    status=WebhookDelivery.Status.SUCCEEDED,
                    finished_at=now,
                    next_attempt_at=None,
                    last_status_code=outcome.status_code,
                )
                WebhookSubscription.objects.filter(
                    pk=subscription.pk, consecutive_failures__gt=0
                ).update(consecutive_failures=0)
                return "succeeded"
            delay = retry_delay(attempt=number, outcome=outcome)
            if delay is not None:
                mine.update(
                    next_attempt_at=now + dt.timedelta(seconds=delay),
                    last_status_code=outcome.status_code,
                )
                return "retrying"
            failed = mine.update(
                status=WebhookDelivery.Status.FAILED,
                finished_at=now,
                next_attempt_at=None,
                last_status_code=outcome.status_code,
            )
    except IntegrityError:
        # The subscription (and with it this delivery) was deleted while we were sending.
        logger.info("Webhook delivery %s vanished during its attempt", delivery.pk)
        return "missing"
    if failed:
        _count_failure(subscription=subscription, outcome=outcome)
    return "failed"


def _count_failure(*, subscription: WebhookSubscription, outcome: Outcome) -> None:
    """One more failed delivery in a row; disable the subscription at the limit, or at once
    on 410 Gone (Standard Webhooks: the receiver wants no more)."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    if outcome.status_code == http.HTTPStatus.GONE:
        services.subscription_disable(
            subscription_id=subscription.pk,
            reason="disabled because the endpoint answered HTTP 410 Gone",
        )
        return
    limit = int(conf.get("OUTBOUND_WEBHOOK_DISABLE_AFTER"))
    services.subscription_disable(
        subscription_id=subscription.pk,
        reason=f"disabled after {limit} consecutive failed deliveries; last: {outcome.summary}",
        only_after_failures=limit,
    )


def deliveries_claim_due(
    *, now: dt.datetime | None = None, limit: int, lease_seconds: int
) -> list[tuple[int, int]]:
    """Claim due pending deliveries (SKIP LOCKED) by pushing next_attempt_at out by a lease;
    returns (delivery id, attempts made) pairs. If the task is lost, the lease runs out and
    the next scan claims it again."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", "attempts")[:limit]
        )
        if rows:
            WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                next_attempt_at=now + dt.timedelta(seconds=lease_seconds)
            )
    return rows
