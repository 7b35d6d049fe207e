""" "Enters segment" / "leaves segment" journey triggers: audiences hands over every logged
membership change (audiences.signals.segment_membership_changed), and each one a journey
can use becomes an internal event `segment.entered` / `segment.left` with properties
{"segment": slug}, stored once under the idempotency key `segment-change:<change id>`.
A journey with trigger event `segment.entered` and trigger filter {"segment": "vip"} then
enrolls under its entry policy like any other trigger; waits, goals and exits can use them.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.db.models import Q

from messaging.models import Contact

from .models import Enrollment, Event, Journey
from .services import event_ingest

logger = logging.getLogger(__name__)

SEGMENT_ENTERED = "segment.entered"
SEGMENT_LEFT = "segment.left"
EVENT_NAMES = {"entered": SEGMENT_ENTERED, "left": SEGMENT_LEFT}


def _slugs(trigger_filter: Any) -> set[str] | None:
    """The segments a trigger filter names; None when it names none (any segment)."""
    want = trigger_filter.get("segment") if isinstance(trigger_filter, dict) else None
    if want is None:
        return None
    return {str(s) for s in want} if isinstance(want, list) else {str(want)}


def segment_trigger_problems(journey: Journey) -> list[str]:
    """A segment trigger must name segments that exist (else it would never start)."""
    if journey.trigger_event not in EVENT_NAMES.values():
        return []
    slugs = _slugs(journey.trigger_filter)
    if not slugs:
        return []
    from audiences.models import Segment

    known = set(Segment.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    return [f"Trigger: there is no segment “{slug}”." for slug in sorted(slugs - known)]


def _wanted(changes: list) -> list:
    """The changes some active journey (trigger, goal or exit) or waiting enrollment can use: a
    large first computation of a segment no journey names makes no events. Two queries."""
    names = set(EVENT_NAMES.values())
    every: set[str] = set()  # event names wanted for any segment
    per_name: dict[str, set[str]] = {}
    active = Journey.objects.filter(status=Journey.Status.ACTIVE).filter(
        Q(trigger_event__in=names) | Q(goal_event__in=names) | Q(exit_event__in=names)
    )
    for trigger, trigger_filter, goal, exit_ in active.values_list(
        "trigger_event", "trigger_filter", "goal_event", "exit_event"
    ):
        every.update({goal, exit_} & names)
        if trigger in names:
            slugs = _slugs(trigger_filter)
            if slugs is None:
                every.add(trigger)
            else:
                per_name.setdefault(trigger, set()).update(slugs)
    waiting = set(
        Enrollment.objects.filter(
            state=Enrollment.State.WAITING,
            waiting_for__in=names,
            contact_id__in={c.contact_id for c in changes},
        ).values_list("contact_id", "waiting_for")
    )
    return [
        c
        for c in changes
        if (name := EVENT_NAMES[c.change]) in every
        or c.segment in per_name.get(name, ())
        or (c.contact_id, name) in waiting
    ]


def on_segment_membership_changed(sender: Any, *, changes: list, **_: Any) -> None:
    """Runs inside audiences' emitting transaction: the events commit with the changes'
    emitted mark. A change handed over twice finds its event under its key and does nothing."""
    wanted = _wanted(changes)
    if not wanted:
        return
    contacts = Contact.objects.filter(erased_at__isnull=True).in_bulk(
        {c.contact_id for c in wanted}
    )
    for change in wanted:
        contact = contacts.get(change.contact_id)
        if contact is None:
            continue  # erased (or gone): never a journey again
        try:
            event_ingest(
                name=EVENT_NAMES[change.change],
                contact=contact,
                properties={"segment": change.segment},
                occurred_at=change.at,
                idempotency_key=f"segment-change:{change.id}",
                source=Event.Source.INTERNAL,
            )
        except DatabaseError:
            raise  # the whole batch is handed over again later
        except Exception:
            # A journey's own bug must not hold every later change back.
            logger.exception("Segment change %s could not start its journeys", change.id)


def register() -> None:
    from audiences.signals import segment_membership_changed

    segment_membership_changed.connect(
        on_segment_membership_changed, dispatch_uid="journeys.segment_triggers"
    )
