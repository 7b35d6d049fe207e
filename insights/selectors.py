"""Who counts which event as a conversion: every journey (any version but drafts, since an
archived version's running enrollments still send) and every broadcast (but those finished
more than the longest window ago) with conversion events, by event name. Read on every
applied event, so cached (ATTRIBUTION_CACHE_SECONDS) and dropped whenever a journey or a
broadcast is saved or deleted (insights.apps); and read from that cache once per batch of
applied events (`conversion_owners_at`: the events of one batch share their `now`), as the
batch already reads the active journeys once."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Broadcast
from journeys.models import Journey
from messaging.conversion import MAX_CONVERSION_WINDOW_HOURS

OWNERS_CACHE_KEY = "insights:conversion-owners"
# (now, owners) of the batch this thread applies (conversion_owners_at).
_batch = threading.local()


@dataclass(frozen=True)
class Owner:
    """A journey or a broadcast that counts an event as a conversion, with its settings."""

    kind: str  # "journey" | "broadcast"
    id: int
    window_hours: int
    model: str
    revenue_property: str


def _owners_by_event() -> dict[str, tuple[Owner, ...]]:
    found: dict[str, list[Owner]] = {}
    fields = ("id", "conversion_events", "conversion_window_hours")
    fields += ("attribution_model", "revenue_property")
    journeys = Journey.objects.exclude(status=Journey.Status.DRAFT).exclude(conversion_events=[])
    long_ago = timezone.now() - dt.timedelta(hours=MAX_CONVERSION_WINDOW_HOURS)
    broadcasts = (
        Broadcast.objects.exclude(status=Broadcast.Status.DRAFT)
        .exclude(conversion_events=[])
        .exclude(Q(completed_at__lt=long_ago) | Q(cancelled_at__lt=long_ago))
    )
    for kind, rows in (("journey", journeys), ("broadcast", broadcasts)):
        for pk, events, window, model, prop in rows.order_by().values_list(*fields):
            owner = Owner(kind, pk, window, model, prop)
            for name in dict.fromkeys(events if isinstance(events, list) else []):
                if isinstance(name, str):
                    found.setdefault(name, []).append(owner)
    return {name: tuple(owners) for name, owners in found.items()}


def conversion_owners() -> dict[str, tuple[Owner, ...]]:
    """Event name -> the journeys and broadcasts counting it as a conversion (cached)."""
    owners = cache.get(OWNERS_CACHE_KEY)
    if owners is None:
        owners = _owners_by_event()
        cache.set(OWNERS_CACHE_KEY, owners, timeout=settings.ATTRIBUTION_CACHE_SECONDS)
    return owners


def conversion_owners_at(now: dt.datetime) -> dict[str, tuple[Owner, ...]]:
    """`conversion_owners()`, read once for every event applied with this very `now` object
    (journeys.services.events_apply_pending passes one per batch, in one transaction): a cache
    round trip per batch instead of per event. A save or delete in this process drops it."""
    memo = getattr(_batch, "memo", None)
    if memo is not None and memo[0] is now:
        return memo[1]
    owners = conversion_owners()
    _batch.memo = (now, owners)
    return owners


def conversion_event_names() -> frozenset[str]:
    return frozenset(conversion_owners())


def forget_conversion_owners(**_: object) -> None:
    _batch.memo = None
    cache.delete(OWNERS_CACHE_KEY)
