"""Reads for outbound webhooks."""

from __future__ import annotations

import threading
import time

from . import conf
from .models import WebhookSubscription

_lock = threading.Lock()
# (when it was read, on time.monotonic(); the event types), or None: not read yet / forgotten.
_subscribed: tuple[float, frozenset[str]] | None = None
_generation = 0
_clock = time.monotonic  # tests move it


def subscribed_event_types() -> frozenset[str]:
    """The event types at least one active subscription asked for.

    Every message status change asks this (outbound.services.event_publish), almost always to
    hear "nobody", so each process keeps the answer for OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_
    SECONDS. A save or delete in this process forgets it at once (outbound.apps); another
    process (a worker, when the web process made the change) reads it again within that many
    seconds: a new or re-enabled subscription, or one given a new event type, starts receiving
    events from every process at most that long after it was saved. A stale answer that still
    lists a type only costs the publisher its (authoritative) subscription query.
    """
    global _subscribed
    ttl = float(conf.get("OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS"))
    cached = _subscribed
    now = _clock()
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    generation = _generation
    types = frozenset(
        event_type
        for event_types in WebhookSubscription.objects.filter(is_active=True).values_list(
            "event_types", flat=True
        )
        if isinstance(event_types, list)
        for event_type in event_types
    )
    with _lock:
        # Forgotten while we read (a subscription saved meanwhile): don't keep what we read.
        if generation == _generation:
            _subscribed = (now, types)
    return types


def forget_subscribed_event_types() -> None:
    """Drop this process's copy of `subscribed_event_types` (a subscription changed)."""
    global _subscribed, _generation
    with _lock:
        _generation += 1
        _subscribed = None
