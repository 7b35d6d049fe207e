"""Writes for outbound webhooks: subscriptions, and publishing an event to its subscribers."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.models import ApiKey

from . import conf, payloads
from .models import WebhookDelivery, WebhookSubscription
from .selectors import subscribed_event_types

logger = logging.getLogger(__name__)

MANUALLY_DISABLED = "disabled by a user"


# --- Subscriptions ----------------------------------------------------------------------


def subscription_create(
    *,
    url: str,
    event_types: list[str],
    description: str = "",
    is_active: bool = True,
    created_by_key: ApiKey | None = None,
) -> WebhookSubscription:
    """Create a subscription; its signing secret is generated here and shown once."""
    subscription = WebhookSubscription(
        url=url,
        event_types=list(dict.fromkeys(event_types)),
        description=description,
        is_active=is_active,
        disabled_reason="" if is_active else MANUALLY_DISABLED,
        disabled_at=None if is_active else timezone.now(),
        created_by_key=created_by_key,
    )
    subscription.full_clean()
    subscription.save()
    return subscription


def subscription_update(
    *, subscription: WebhookSubscription, data: dict[str, Any]
) -> WebhookSubscription:
    """Change url/description/event types; `is_active` true re-enables (clearing the reason
    and the failure count), false disables and stops its pending deliveries."""
    for field in ("url", "description"):
        if field in data:
            setattr(subscription, field, data[field])
    if "event_types" in data:
        subscription.event_types = list(dict.fromkeys(data["event_types"]))
    subscription.full_clean()
    with transaction.atomic():
        subscription.save(update_fields=["url", "description", "event_types", "updated_at"])
        if data.get("is_active") is True:
            subscription_enable(subscription=subscription)
        elif data.get("is_active") is False and subscription.is_active:
            subscription_disable(subscription_id=subscription.pk, reason=MANUALLY_DISABLED)
            subscription.refresh_from_db()
    return subscription


def subscription_enable(*, subscription: WebhookSubscription) -> None:
    subscription.is_active = True
    subscription.disabled_reason = ""
    subscription.disabled_at = None
    subscription.consecutive_failures = 0
    subscription.save(
        update_fields=[
            "is_active",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "updated_at",
        ]
    )


def subscription_disable(
    *, subscription_id: int, reason: str, only_after_failures: int | None = None
) -> bool:
    """Disable a subscription and fail its pending deliveries; False if it was not active (or,
    with `only_after_failures`, had fewer failures in a row than that)."""
    now = timezone.now()
    rows = WebhookSubscription.objects.filter(pk=subscription_id, is_active=True)
    if only_after_failures is not None:
        rows = rows.filter(consecutive_failures__gte=only_after_failures)
    with transaction.atomic():
        # A conditional update: two workers failing at once disable it (and log it) once.
        if not rows.update(
            is_active=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now
        ):
            return False
        stopped = WebhookDelivery.objects.filter(
            subscription_id=subscription_id, status=WebhookDelivery.Status.PENDING
        ).update(status=WebhookDelivery.Status.FAILED, finished_at=now, next_attempt_at=None)
    logger.warning(
        "Webhook subscription %s disabled (%s); %d pending deliveries stopped",
        subscription_id,
        reason,
        stopped,
    )
    return True


# --- Publishing ------------------------------------------------------------------------


def _enqueue(deliveries: Iterable[WebhookDelivery]) -> None:
    from .tasks import deliver_webhook

    for delivery in deliveries:
        try:
            deliver_webhook.delay(delivery.pk, 0)
        except Exception:
            # The broker is down: the dispatcher sends it once its first lease runs out.
            logger.exception("Could not enqueue webhook delivery %s", delivery.pk)


def deliveries_create(
    *,
    subscriptions: list[WebhookSubscription],
    event_type: str,
    payload: payloads.Payload,
    now: dt.datetime | None = None,
) -> list[WebhookDelivery]:
    """One pending delivery per subscription, the first attempt kicked after commit."""
    now = now or timezone.now()
    # Due only after a lease: the on-commit kick sends it now; the dispatcher steps in only
    # if that kick was lost.
    due = now + dt.timedelta(seconds=conf.get("OUTBOUND_WEBHOOK_LEASE_SECONDS"))
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                subscription=subscription,
                event_type=event_type,
                payload=payload,
                next_attempt_at=due,
            )
            for subscription in subscriptions
        ]
    )
    transaction.on_commit(lambda: _enqueue(deliveries))
    return deliveries


def event_publish(
    *, event_type: str, build: Callable[[], payloads.Payload | None]
) -> list[WebhookDelivery]:
    """Fan an event out to the active subscriptions that asked for it. With no subscriber to
    its type this is usually no query (a per-process cache, outbound.selectors) and the
    payload is never built."""
    if event_type not in subscribed_event_types():
        return []
    # The cache may be stale, so the subscriptions themselves are read here. The type is
    # matched in Python because JSON containment is not portable (SQLite has none), and active
    # subscriptions number in the tens.
    subscriptions = [
        s
        for s in WebhookSubscription.objects.filter(is_active=True).only("id", "event_types")
        if event_type in s.event_types
    ]
    if not subscriptions:
        return []
    payload = build()
    if payload is None:
        return []
    return deliveries_create(subscriptions=subscriptions, event_type=event_type, payload=payload)


def ping_send(*, subscription: WebhookSubscription) -> WebhookDelivery:
    """Queue a `webhook.test` ping to one subscription, whatever types it asked for."""
    payload = payloads.ping(subscription_id=subscription.pk)
    [delivery] = deliveries_create(
        subscriptions=[subscription], event_type=payload["type"], payload=payload
    )
    return delivery
