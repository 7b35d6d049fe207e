"""What an event does to enrollments already running (services._apply_event calls these in
its transaction): goals convert, exit conditions exit, waits wake. Each may be keyed: the
journey's or step's match config (journeys.keyed) compares the event's properties with the
enrollment's trigger event, in SQL, so the queries do not grow with the enrollments.

A journey's goal and exit may name the same event: the goal is applied first, so an event
that satisfies both converts (an exit only ends what is still live after the goals)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q

from messaging.models import Touchpoint
from messaging.services import touchpoints_write

from .ending import enrollment_end
from .keyed import match_q
from .models import Enrollment, Event, Journey, Step

LIVE = Enrollment.LIVE_STATES


def _keyed(candidates, by: str, matches, event: Event):
    """Narrow `candidates` (enrollments) to those whose match config — per distinct value of
    `by` (the journey or the current step); `matches` maps those ids to their configs —
    accepts `event`: one query for the distinct owners, one for their configs, then one SQL
    filter on the trigger events' properties."""
    owners = set(candidates.order_by().values_list(by, flat=True).distinct())
    if not owners:
        return candidates.none()
    clauses = Q(pk__in=[])
    for owner, match in matches(owners).items():
        q = match_q(match if isinstance(match, dict) else None, event.properties or {})
        if q is not None:
            clauses |= Q(**{by: owner}) & q
    return candidates.filter(clauses)


def _goal_matches(journey_ids: set[int]) -> dict[int, Any]:
    return dict(Journey.objects.filter(pk__in=journey_ids).values_list("pk", "goal_match"))


def _exit_matches(journey_ids: set[int]) -> dict[int, Any]:
    return dict(Journey.objects.filter(pk__in=journey_ids).values_list("pk", "exit_match"))


def _step_matches(step_ids: set[int]) -> dict[int, Any]:
    rows = Step.objects.filter(pk__in=step_ids).values_list("pk", "config")
    return {pk: (config or {}).get("match") for pk, config in rows}


def _end_all(live, *, state: str, reason: str, now: dt.datetime) -> list[int]:
    """End these live enrollments (locked first): one UPDATE of their rows and one INSERT
    of their touchpoints, whatever their number."""
    ended = list(live.select_for_update(of=("self",)).select_related("journey").order_by("pk"))
    if not ended:
        return []
    touchpoints: list[Touchpoint] = []
    for enrollment in ended:
        enrollment_end(
            enrollment, state=state, reason=reason, now=now, defer_to=touchpoints, save=False
        )
    first = ended[0]  # every row ends with the same values
    Enrollment.objects.filter(pk__in=[e.pk for e in ended]).update(
        state=first.state,
        exit_reason=first.exit_reason,
        ended_at=first.ended_at,
        next_run_at=None,
        waiting_for="",
        wait_until=None,
        updated_at=now,
    )
    touchpoints_write(touchpoints)
    return [e.pk for e in ended]


def _convert(event: Event, now: dt.datetime) -> list[int]:
    """End the contact's live enrollments whose journey has this event as its goal (and
    whose goal match accepts it) as converted."""
    live = _keyed(
        Enrollment.objects.filter(
            contact_id=event.contact_id, state__in=LIVE, journey__goal_event=event.name
        ),
        "journey_id",
        _goal_matches,
        event,
    )
    return _end_all(
        live, state=Enrollment.State.CONVERTED, reason=f"goal event {event.name}", now=now
    )


def _exit(event: Event, now: dt.datetime) -> list[int]:
    """End the contact's live enrollments whose journey has this event as its exit event
    (and whose exit match accepts it) as exited. Runs after `_convert`: a goal wins."""
    live = _keyed(
        Enrollment.objects.filter(
            contact_id=event.contact_id, state__in=LIVE, journey__exit_event=event.name
        ),
        "journey_id",
        _exit_matches,
        event,
    )
    return _end_all(live, state=Enrollment.State.EXITED, reason=f"exit event {event.name}", now=now)


def _wake(event: Event, now: dt.datetime) -> list[int]:
    waiting = _keyed(
        Enrollment.objects.filter(
            contact_id=event.contact_id, state=Enrollment.State.WAITING, waiting_for=event.name
        ),
        "current_step_id",
        _step_matches,
        event,
    )
    ids = list(waiting.values_list("pk", flat=True))
    if ids:
        Enrollment.objects.filter(pk__in=ids, waiting_for=event.name).update(
            wake_event=event, next_run_at=now
        )
    return ids
