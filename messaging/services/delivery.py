"""Delivering queued messages to the provider, and the sweeper that recovers from crashes."""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app.channels import Channel
from channels_app.providers.base import OutboundMessage, ProviderError
from channels_app.providers.registry import get_provider
from channels_app.ratelimit import reserve_send_slot
from config import task_limits

from .. import policies
from ..models import ConsentSource, ConsentStatus, Message, TouchpointKind
from ..status import MessageStatus
from ..unsubscribe import needs_unsubscribe, unsubscribe_headers
from .consent import consent_set
from .contacts import mark_address_bad
from .messages import enqueue_delivery
from .transitions import message_transition

# The package's logger: log lines keep the name they had before it was split.
logger = logging.getLogger(__package__)


@dataclass(frozen=True)
class DeliveryOutcome:
    result: str
    retry_in: float | None = None


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; never sooner than the provider asked."""
    ceiling = min(
        settings.MESSAGE_RETRY_MAX_SECONDS,
        settings.MESSAGE_RETRY_BASE_SECONDS * (2 ** max(attempt - 1, 0)),
    )
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after + random.uniform(0, 1))
    return round(delay, 3)


def _outbound(message: Message) -> OutboundMessage:
    content_sid, variables = message.content_sid, dict(message.content_variables or {})
    if (
        message.channel == Channel.WHATSAPP
        and content_sid
        and message.body
        and policies.in_whatsapp_window(message.contact, timezone.now())
    ):
        # Decided at send time, not when queued: a held message may leave after the window
        # has opened or closed. Inside it the freeform body goes; outside, the template.
        content_sid, variables = "", {}
    return OutboundMessage(
        message_id=str(message.pk),
        channel=message.channel,
        to=message.to_address,
        body=message.body,
        subject=message.subject,
        html_body=message.html_body,
        content_sid=content_sid,
        content_variables=variables,
        media_urls=tuple(u for u in message.media if isinstance(u, str)),
        categories=tuple(c for c in (message.source, message.category) if c),
        headers=(
            unsubscribe_headers(
                contact_id=message.contact_id, channel=message.channel, message_id=message.pk
            )
            if needs_unsubscribe(channel=message.channel, category=message.category)
            else ()
        ),
    )


def _count_delivery_try(message_id: uuid.UUID) -> tuple[str, int] | None:
    """Count one more delivery try of a queued message, committed at once; its (channel,
    tries), or None when it is not queued (any more) or does not exist.

    Committed before anything that could kill the worker: a message whose delivery keeps
    crashing its worker before the claim would otherwise be redelivered forever (acks_late +
    reject_on_worker_lost). One conditional UPDATE ... RETURNING (PostgreSQL, SQLite >= 3.35)
    instead of a status read, an UPDATE and a re-read: this runs for every send.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    pk = Message._meta.pk.get_db_prep_value(message_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET delivery_tries = delivery_tries + 1"  # noqa: S608 (no input)
            " WHERE id = %s AND status = %s RETURNING channel, delivery_tries",
            [pk, MessageStatus.QUEUED.value],
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def message_deliver(*, message_id: uuid.UUID | str) -> DeliveryOutcome:
    """Send one queued message: claim it (committed), call the provider, record the outcome.

    A message not in `queued` is left alone, so a redelivered task never sends twice. The
    sender's rate limit is honoured first: the worker waits for a close slot, or hands the
    message back to the queue until a far one.
    """
    message_id = Message._meta.pk.to_python(message_id)
    counted = _count_delivery_try(message_id)
    if counted is None:
        status = Message.objects.filter(pk=message_id).values_list("status", flat=True).first()
        return DeliveryOutcome("missing" if status is None else f"already {status}")
    channel, tries = counted
    if tries > settings.MESSAGE_MAX_ATTEMPTS:
        parked = Message.objects.select_related("contact").get(pk=message_id)
        message_transition(
            message=parked,
            to=MessageStatus.FAILED,
            fields={
                "error_code": "crash_loop",
                "error_message": f"its delivery stopped the worker {tries - 1} times before "
                "the provider was called",
            },
            touchpoint_data={"reason": "delivery crashed its worker repeatedly", "tries": tries},
        )
        return DeliveryOutcome("failed")
    slot = reserve_send_slot(channel=channel, sender=get_provider(channel).sender)
    if not slot.granted:
        # A hand-back is not a crash: don't let waiting for the sender count towards the guard.
        Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
        return DeliveryOutcome("rate_limited", retry_in=slot.wait)
    if slot.wait > 0:
        time.sleep(slot.wait)
    try:
        # The task's soft limit, in every pool: the claim and the provider call only start
        # when the call's worst case (connect + read timeouts) fits before it. Otherwise the
        # message stays `queued`, untouched, for the sweeper to hand to another run.
        task_limits.check(need=provider_call_seconds(), phase="the provider call")
    except task_limits.SoftTimeLimitExceeded:
        Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
        raise
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("contact", "topic")
            .filter(pk=message_id)
            .first()
        )
        if message is None:
            return DeliveryOutcome("missing")
        if message.status != MessageStatus.QUEUED:
            return DeliveryOutcome(f"already {message.status}")
        wait = (
            (message.next_attempt_at - timezone.now()).total_seconds()
            if (message.next_attempt_at)
            else 0
        )
        if wait > 1:
            # A duplicate or redelivered task during a backoff or a hold: the provider asked
            # us to wait (Retry-After), so the scheduled attempt (or the sweeper) sends it at
            # its time; this task just ends.
            Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
            return DeliveryOutcome("not due")
        decision = policies.check_send(
            contact=message.contact,
            channel=message.channel,
            category=message.category,
            address=message.to_address,
            lock=True,
            topic=message.topic,
        )
        if not decision.allowed:
            message_transition(
                message=message,
                to=MessageStatus.SKIPPED,
                fields={"error_code": decision.code, "error_message": decision.reason},
                touchpoint_data={"reason": decision.reason, "code": decision.code},
            )
            return DeliveryOutcome("skipped")
        provider = get_provider(message.channel)
        attempt = message.attempts + 1
        message_transition(
            message=message,
            to=MessageStatus.SENDING,
            fields={"attempts": attempt, "provider": provider.name, "next_attempt_at": None},
            touchpoint_data={"attempt": attempt},
            dedupe_key=f"msg:{message.pk}:sending:{attempt}",
        )
    try:
        result = provider.send(_outbound(message))
    except ProviderError as exc:
        return _delivery_failed(message, exc, attempt)
    except Exception as exc:
        # A bug or an unexpected reply after the request left: the provider may have the
        # message, so it is parked as `unknown` for a status callback to settle.
        logger.exception("Unexpected error delivering message %s", message.pk)
        _mark_unknown(message, f"unexpected error during the provider call: {exc!r}")
        return DeliveryOutcome("unknown")
    with transaction.atomic():
        fields = {
            "provider_message_id": result.provider_message_id,
            "from_address": result.from_address,
            "error_code": "",
            "error_message": "",
        }
        moved = message_transition(
            message=message,
            to=MessageStatus.SENT,
            fields=fields,
            touchpoint_data={"provider_message_id": result.provider_message_id, "attempt": attempt},
        )
        if not moved:
            # A status callback got here first (it carries our id); keep the provider id.
            Message.objects.filter(pk=message.pk, provider_message_id="").update(
                provider_message_id=result.provider_message_id,
                from_address=result.from_address,
            )
    return DeliveryOutcome("sent")


def provider_call_seconds() -> float:
    """The worst case of one provider call: connect and read timeouts, and a margin to
    record its outcome."""
    return 2 * settings.PROVIDER_TIMEOUT_SECONDS + 5


def _mark_unknown(message: Message, reason: str, now: datetime | None = None) -> None:
    # next_attempt_at: when `messaging.reconcile` asks the provider, if no callback came first.
    now = now or timezone.now()
    recheck = now + timedelta(seconds=settings.UNKNOWN_RECONCILE_AFTER_SECONDS)
    message_transition(
        message=message,
        to=MessageStatus.UNKNOWN,
        occurred_at=now,
        fields={
            "error_code": "unknown",
            "error_message": reason[:2000],
            "next_attempt_at": recheck,
        },
        touchpoint_data={"reason": reason[:500]},
    )


def _delivery_failed(message: Message, exc: ProviderError, attempt: int) -> DeliveryOutcome:
    error = {"error_code": exc.code[:32], "error_message": exc.message[:2000]}
    if exc.ambiguous:
        _mark_unknown(message, f"no answer from the provider ({exc.message})")
        return DeliveryOutcome("unknown")
    if exc.permanent or attempt >= settings.MESSAGE_MAX_ATTEMPTS:
        reason = (
            exc.message if exc.permanent else f"gave up after {attempt} attempts: {exc.message}"
        )
        with transaction.atomic():
            message_transition(
                message=message,
                to=MessageStatus.FAILED,
                fields={**error, "error_message": reason[:2000]},
                touchpoint_data={"code": exc.code, "reason": reason[:500], "attempt": attempt},
            )
            if exc.unsubscribed:
                consent_set(
                    contact=message.contact,
                    channel=message.channel,
                    status=ConsentStatus.UNSUBSCRIBED,
                    source=ConsentSource.PROVIDER,
                    message=message,
                    note=f"provider error {exc.code}: recipient opted out",
                )
            if exc.invalid_address:
                mark_address_bad(message)
        return DeliveryOutcome("failed")
    delay = retry_delay(attempt, exc.retry_after)
    message_transition(
        message=message,
        to=MessageStatus.QUEUED,
        fields={**error, "next_attempt_at": timezone.now() + timedelta(seconds=delay)},
        touchpoint_kind=TouchpointKind.RETRYING,
        touchpoint_data={"attempt": attempt, "retry_in_seconds": delay, "code": exc.code},
        dedupe_key=f"msg:{message.pk}:retrying:{attempt}",
    )
    return DeliveryOutcome("retrying", retry_in=delay)


def messages_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Recover from crashes: re-queue `queued` messages whose task was lost, and park
    messages stuck in `sending` as `unknown` (never resend them blindly)."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.MESSAGE_QUEUED_LEASE_SECONDS)
    # Due (a held message whose hold ended, a retry whose task was lost) and not brand new
    # (a fresh message's task is normally on its way).
    stale_ids = list(
        Message.objects.filter(
            status=MessageStatus.QUEUED, next_attempt_at__lte=now, updated_at__lt=now - lease
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale_ids:
        # updated_at is the sweeper's lease (next_attempt_at is the provider's backoff, which
        # delivery honours): the next sweep leaves them alone while their task runs.
        Message.objects.filter(pk__in=stale_ids, status=MessageStatus.QUEUED).update(updated_at=now)
        for pk in stale_ids:
            enqueue_delivery(pk)
    timeout = timedelta(seconds=settings.MESSAGE_SENDING_TIMEOUT_SECONDS)
    stuck = list(
        Message.objects.filter(status=MessageStatus.SENDING, sending_at__lt=now - timeout).only(
            "pk", "contact_id", "channel", "direction", "status"
        )[:limit]
    )
    for message in stuck:
        _mark_unknown(
            message,
            "the worker stopped during the provider call; waiting for a status callback",
            now=now,
        )
    return {"requeued": len(stale_ids), "unknown": len(stuck)}
