"""Writes of journey state: ingesting events, enrolling, converting, waking."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Min
from django.utils import timezone

from audiences.dirty import contacts_mark_changed
from messaging.models import Contact, Direction
from messaging.services import idempotent_replay, touchpoint_record

from . import event_hooks
from .conditions import filter_matches
from .ending import enrollment_end, journey_touchpoint
from .event_effects import _convert, _exit, _wake
from .experiments import in_holdout
from .keyed import entry_key_value
from .models import Enrollment, Event, Journey
from .selectors import event_name_unused, unmatched_event_warning

logger = logging.getLogger(__name__)
LIVE = Enrollment.LIVE_STATES


def _active_journeys(name: str) -> list[Journey]:
    return list(
        Journey.objects.filter(status=Journey.Status.ACTIVE, trigger_event=name).prefetch_related(
            "steps"
        )
    )


def enrollment_start(
    *, journey: Journey, contact: Contact, event: Event | None, now: dt.datetime
) -> Enrollment | None:
    """Enroll a contact if the journey's entry policy allows; None when it does not."""
    policy = journey.entry_policy
    key_value = ""
    if journey.entry_key:
        # Keyed entry: the policy holds per contact AND key (e.g. one enrollment per cart).
        key_value = entry_key_value(journey.entry_key, event.properties if event else None)
        if key_value is None:
            return None
    existing = Enrollment.objects.filter(
        journey=journey, contact=contact, entry_key_value=key_value
    )
    if policy == Journey.EntryPolicy.ONCE and existing.exists():
        return None
    if policy == Journey.EntryPolicy.ONCE_AT_A_TIME and existing.filter(state__in=LIVE).exists():
        return None
    steps = list(journey.steps.all())
    context = {
        "event": {"name": event.name, "id": event.pk, **(event.properties or {})} if event else {},
        "steps": {},
    }
    holdout = in_holdout(
        journey_slug=journey.slug, contact_id=contact.pk, percent=journey.holdout_percent
    )
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                journey=journey,
                contact=contact,
                trigger_event=event,
                entry_policy=policy,
                entry_key_value=key_value,
                journey_version=journey.version,
                state=Enrollment.State.ACTIVE,
                current_step=None if holdout else (steps[0] if steps else None),
                next_run_at=None if holdout else now,
                context=context,
                holdout=holdout,
            )
    except IntegrityError:
        # A concurrent event enrolled the contact first: the constraint is the guarantee.
        return None
    journey_touchpoint(
        enrollment,
        "journey_entered",
        data={"event": event.name if event else "", "version": journey.version}
        | ({"holdout": True} if holdout else {}),
        dedupe="entered",
        occurred_at=now,
    )
    if holdout:
        enrollment_hold_out(enrollment, now=now)
    return enrollment


def enrollment_hold_out(enrollment: Enrollment, *, now: dt.datetime) -> None:
    """The control group of the journey's holdout: nothing is sent; the enrollment completes
    at once (exit_reason "holdout"), with a touchpoint saying why."""
    journey_touchpoint(
        enrollment,
        "journey_holdout",
        data={
            "reason": "in the journey's control group (holdout): nothing is sent",
            "holdout_percent": enrollment.journey.holdout_percent,
        },
        dedupe="holdout",
        occurred_at=now,
    )
    enrollment_end(enrollment, state=Enrollment.State.COMPLETED, reason="holdout", now=now)


def kick(enrollment_ids: list[int]) -> None:
    """Advance these enrollments soon after the current transaction commits."""
    if not enrollment_ids:
        return
    from .tasks import CHUNK, advance_enrollments

    ids = list(enrollment_ids)

    def enqueue() -> None:
        for start in range(0, len(ids), CHUNK):
            advance_enrollments.delay(ids[start : start + CHUNK])

    transaction.on_commit(enqueue, robust=True)


def _apply_event(
    event: Event, now: dt.datetime, journeys: dict[str, list[Journey]] | None = None
) -> list[int]:
    """What an event does, in the caller's transaction: its touchpoint, goal conversions,
    exit conditions (after the goals: a goal wins), waiting enrollments woken, new
    enrollments (journeys.event_effects), the hooks of higher apps (journeys.event_hooks:
    attribution); the result and processed_at stored on the event. Returns the enrollments
    to advance (the caller kicks them on commit). `journeys` caches the active journeys per
    event name across a batch."""
    touchpoint_record(
        contact_id=event.contact_id,
        kind="event",
        direction=Direction.INBOUND if event.source == Event.Source.API else Direction.INTERNAL,
        occurred_at=event.occurred_at,
        data={"name": event.name, "event_id": event.pk, "properties": event.properties or {}},
        dedupe_key=f"event:{event.pk}",
    )
    converted = _convert(event, now)
    exited = _exit(event, now)
    woken = _wake(event, now)
    if journeys is None:
        journeys = {}
    if event.name not in journeys:
        journeys[event.name] = _active_journeys(event.name)
    entered = []
    for journey in journeys[event.name]:
        if not filter_matches(journey.trigger_filter, event.properties):
            continue
        enrollment = enrollment_start(journey=journey, contact=event.contact, event=event, now=now)
        if enrollment is not None:
            entered.append({"journey": journey.slug, "enrollment": enrollment.pk})
    extra = event_hooks.run(event, now)
    event.result = {
        "enrolled": entered,
        "converted": converted,
        "exited": exited,
        "resumed": woken,
        **extra,
    }
    if (
        event.source == Event.Source.API
        and not (entered or converted or exited or woken or extra)
        and event_name_unused(event.name)
    ):
        event.result["warnings"] = [unmatched_event_warning(event.name)]
    event.processed_at = now
    Event.objects.filter(pk=event.pk).update(result=event.result, processed_at=now)
    return [e["enrollment"] for e in entered] + woken


def event_ingest(
    *,
    name: str,
    contact: Contact,
    properties: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    source: str = Event.Source.API,
) -> tuple[Event, bool]:
    """Store an event and apply it in one transaction (internal events: a reply must wake
    its enrollment now). Returns (event, created); a replayed key returns the first event and
    changes nothing. The API stores with `event_accept` and applies in a task instead."""
    if idempotency_key:
        existing = Event.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return idempotent_replay(existing, fingerprint), False
    now = timezone.now()
    try:
        with transaction.atomic():
            event = Event.objects.create(
                name=name,
                contact=contact,
                properties=properties or {},
                occurred_at=occurred_at or now,
                source=source,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
            )
            kick(_apply_event(event, now))
            # Segments with event conditions look at the contact again (one INSERT, no lock).
            contacts_mark_changed([contact.pk])
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = Event.objects.get(idempotency_key=idempotency_key)
        return idempotent_replay(existing, fingerprint), False
    return event, True


def event_key_claim(idempotency_key: str) -> None:
    """Hold this idempotency key until the caller's transaction ends, before anything else is
    locked or written: racing requests for one key then run one after the other, and each
    sees what the one before it committed (PostgreSQL: a transaction-scoped advisory lock on
    the key's hash, where a collision only serialises more; SQLite's IMMEDIATE transactions
    already run one writer at a time)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("event_key_claim holds the key until the transaction ends: open one")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext('touchline:event-key'), hashtext(%s))",
                [idempotency_key],
            )


def event_accept(
    *,
    name: str,
    contact: Contact,
    properties: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> tuple[Event, bool]:
    """Store an API event durably, in the caller's transaction, which has claimed its key
    (`event_key_claim`) and found no event under it, and have a worker apply it soon after
    commit (`events_apply_pending`); the beat sweeper applies any whose kick was lost.
    Returns (event, True). The key's unique constraint stays the guarantee."""
    event = Event(
        name=name,
        contact=contact,
        properties=properties or {},
        occurred_at=occurred_at or timezone.now(),
        source=Event.Source.API,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
        processed_at=None,  # pending: a worker applies it (the column's default says applied)
    )
    event.save(force_insert=True)
    transaction.on_commit(events_kick, robust=True)
    return event, True


EVENTS_KICK_FLAG = "journeys:events-kick-pending"
# How long a kick's flag lives if its task never starts (a lost publish): the sweeper
# applies the events meanwhile.
EVENTS_KICK_FLAG_SECONDS = 30
EVENTS_BATCH = 100
# Errors that say nothing about the event itself: it is applied again on a later pass.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def events_kick() -> None:
    """Queue `process_events` unless one is already queued and not yet started: a burst of
    events costs one cache round trip each and one task, not a task per event."""
    from django.conf import settings
    from django.core.cache import cache

    from .tasks import process_events

    if not settings.REDIS_URL:
        # The embedded default's cache is per process: the worker could not clear a flag
        # set here. A task per event then (one web process, light load).
        process_events.delay()
        return
    if not cache.add(EVENTS_KICK_FLAG, 1, EVENTS_KICK_FLAG_SECONDS):
        return
    try:
        process_events.delay()
    except Exception:
        cache.delete(EVENTS_KICK_FLAG)
        raise


def events_kick_taken() -> None:
    """A `process_events` task started: events accepted from now on need a new kick."""
    from django.core.cache import cache

    cache.delete(EVENTS_KICK_FLAG)


def events_apply_pending(*, older_than: float = 0.0, max_batches: int = 50) -> int:
    """Apply accepted events not yet applied, oldest first, in batches (one transaction each;
    SKIP LOCKED lets several workers share the backlog). An event whose work raises is marked
    applied with the error in its result (logged), so it cannot block the queue."""
    applied = 0
    journeys: dict[str, list[Journey]] = {}
    for _ in range(max_batches):
        now = timezone.now()
        with transaction.atomic():
            pending = Event.objects.select_for_update(skip_locked=True, of=("self",)).filter(
                processed_at__isnull=True
            )
            if older_than:
                pending = pending.filter(received_at__lte=now - dt.timedelta(seconds=older_than))
            claimed = list(pending.select_related("contact").order_by("id")[:EVENTS_BATCH])
            batch = _in_contact_order(claimed)
            to_kick: list[int] = []
            held: set[int] = set()  # contacts whose event met a passing database error
            for event in batch:
                if event.contact_id in held:
                    continue  # after its contact's earlier event, on the next pass
                try:
                    with transaction.atomic():
                        to_kick += _apply_event(event, now, journeys)
                except TRANSIENT_ERRORS:
                    # A deadlock, a lock or statement timeout, a lost connection: not the
                    # event's fault. It stays pending (202 was answered: it must not be lost).
                    logger.warning("Applying event %s deferred", event.pk, exc_info=True)
                    held.add(event.contact_id)
                except Exception as exc:
                    logger.exception("Applying event %s failed", event.pk)
                    Event.objects.filter(pk=event.pk).update(
                        result={"error": type(exc).__name__}, processed_at=now
                    )
            kick(to_kick)
            contacts_mark_changed(event.contact_id for event in batch)
            if held:
                batch = [event for event in batch if event.contact_id not in held]
            if len(batch) < len(claimed):
                # Left for whoever holds the contact's earlier event; look again shortly.
                from .tasks import process_events

                transaction.on_commit(lambda: process_events.apply_async(countdown=1), robust=True)
        applied += len(batch)
        if len(claimed) < EVENTS_BATCH or len(batch) < len(claimed):
            break
    else:
        events_kick()  # more left: another task continues
    return applied


def _in_contact_order(claimed: list[Event]) -> list[Event]:
    """The claimed events minus those of a contact with an earlier event still unapplied
    outside this claim (another worker holds it, mid-batch): a contact's events are applied
    in the order they arrived — a goal event must not overtake the event that enrolls. The
    ones left out stay pending (unlocked at commit) and are applied on a later pass."""
    if not claimed:
        return claimed
    earliest_elsewhere = dict(
        Event.objects.filter(
            processed_at__isnull=True,
            contact_id__in={event.contact_id for event in claimed},
            id__lt=claimed[-1].pk,
        )
        .exclude(id__in=[event.pk for event in claimed])
        .order_by()
        .values("contact_id")
        .annotate(first=Min("id"))
        .values_list("contact_id", "first")
    )
    return [
        event
        for event in claimed
        if event.pk < earliest_elsewhere.get(event.contact_id, event.pk + 1)
    ]


def internal_event(*, contact_id: int, name: str, properties: dict[str, Any], key: str) -> Event:
    """Publish something that happened (a reply, an open) as an event journeys can use,
    applied at once; returns the event (its `result` says what applying it did)."""
    contact = Contact.objects.get(pk=contact_id)
    event, _ = event_ingest(
        name=name,
        contact=contact,
        properties=properties,
        idempotency_key=f"internal:{key}",
        source=Event.Source.INTERNAL,
    )
    return event


def enrollment_exit(*, enrollment: Enrollment, reason: str) -> bool:
    """Staff or system ends a live enrollment early."""
    with transaction.atomic():
        locked = (
            Enrollment.objects.select_for_update(of=("self",))
            .select_related("journey")
            .filter(pk=enrollment.pk, state__in=LIVE)
            .first()
        )
        if locked is None:
            return False
        enrollment_end(locked, state=Enrollment.State.EXITED, reason=reason)
    return True


def enrollments_fast_forward(*, queryset) -> int:
    """Demo/dev: end the current wait of these enrollments now (and run them)."""
    now = timezone.now()
    ids = list(queryset.filter(state=Enrollment.State.WAITING).values_list("pk", flat=True))
    for enrollment in Enrollment.objects.filter(pk__in=ids):
        step = enrollment.context.get("step") or {}
        if "until" in step:
            step["until"] = now.isoformat()
        enrollment.context["step"] = step
        enrollment.next_run_at = now
        enrollment.wait_until = now
        enrollment.save(update_fields=["context", "next_run_at", "wait_until", "updated_at"])
    kick(ids)
    return len(ids)
