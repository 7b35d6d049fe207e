"""Reads of journey configuration that the hot paths share (cached, invalidated on change)."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from .models import Journey, Step

EVENTS_IN_USE_CACHE_KEY = "journeys:events-in-use"


def journey_events_in_use() -> frozenset[str]:
    """Event names that an active journey is triggered by, has as its goal or exit event, or
    waits for.
    Cached for JOURNEY_EVENTS_CACHE_SECONDS and dropped whenever a journey or step is saved
    (journeys.receivers), so a journey activated in the admin counts at once."""
    names = cache.get(EVENTS_IN_USE_CACHE_KEY)
    if names is None:
        active = Journey.objects.filter(status=Journey.Status.ACTIVE).order_by()
        found = set(active.values_list("trigger_event", flat=True))
        found |= set(active.exclude(goal_event="").values_list("goal_event", flat=True))
        found |= set(active.exclude(exit_event="").values_list("exit_event", flat=True))
        found |= set(
            Step.objects.filter(
                journey__status=Journey.Status.ACTIVE, kind=Step.Kind.WAIT_FOR_EVENT
            )
            .order_by()
            .values_list("config__event", flat=True)
        )
        names = sorted(name for name in found if isinstance(name, str) and name)
        cache.set(EVENTS_IN_USE_CACHE_KEY, names, timeout=settings.JOURNEY_EVENTS_CACHE_SECONDS)
    return frozenset(names)


def event_name_unused(name: str) -> bool:
    """No active journey uses this event name, nor any registered hook (conversions)."""
    from . import event_hooks

    return name not in journey_events_in_use() and name not in event_hooks.names_in_use()


def forget_journey_events_in_use(**_: object) -> None:
    cache.delete(EVENTS_IN_USE_CACHE_KEY)


def unmatched_event_warning(name: str) -> str:
    return (
        f"No active journey is triggered by, has as its goal or exit, or waits for {name!r}: "
        "this event was stored but starts nothing. Check the name, or activate a journey "
        "for it (the demo's journeys: manage.py install_blueprints --activate)."
    )
