"""Advancing many enrollments: batches in one transaction, claiming what is due."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from ..models import Enrollment, Journey, Step
from .loop import _held, _run, _wait_not_over, enrollment_advance
from .run import Deferred, Run

# The package's logger: log lines keep the name they had before it was split.
logger = logging.getLogger(__package__)


ADVANCE_BATCH = 50  # enrollments per transaction (and per advance_enrollments task)
CONTACT_STEP_KINDS = {Step.Kind.SEND, Step.Kind.SURVEY, Step.Kind.BRANCH}


def _reads_contact(steps: list[Step]) -> bool:
    return any(
        s.kind in CONTACT_STEP_KINDS or (s.kind == Step.Kind.WAIT and s.config.get("until_time"))
        for s in steps
    )


def enrollments_advance(
    *, enrollment_ids: list[int], now: dt.datetime | None = None
) -> dict[int, str]:
    """Advance several enrollments (each as enrollment_advance would) in one transaction:
    one SKIP LOCKED query locks them, each journey's steps are read once, the engine's
    touchpoints and step visits are written in one statement each (ADVANCE_BATCH ids per
    transaction). If any of them raises, that transaction is rolled back and each of its
    enrollments is advanced in its own (enrollment_advance), so the error fails only its
    own enrollment. Returns the outcome per id."""
    now = now or timezone.now()
    results: dict[int, str] = {}
    for start in range(0, len(enrollment_ids), ADVANCE_BATCH):
        ids = enrollment_ids[start : start + ADVANCE_BATCH]
        try:
            with transaction.atomic():
                results.update(_advance_together(ids, now))
        except Exception:
            logger.warning(
                "Advancing %d enrollments together failed; advancing them one by one",
                len(ids),
                exc_info=True,
            )
            results.update({pk: enrollment_advance(enrollment_id=pk, now=now) for pk in ids})
    return results


def _advance_together(enrollment_ids: list[int], now: dt.datetime) -> dict[int, str]:
    results = dict.fromkeys(enrollment_ids, "skipped")
    live = Enrollment.objects.filter(state__in=Enrollment.LIVE_STATES)
    enrollments = list(
        live.select_for_update(skip_locked=True).filter(pk__in=enrollment_ids).order_by("pk")
    )
    if not enrollments:
        return results
    journeys = (
        Journey.objects.select_related("topic")
        .prefetch_related("steps")
        .in_bulk({e.journey_id for e in enrollments})
    )
    steps_of = {pk: list(journey.steps.all()) for pk, journey in journeys.items()}
    step_by_id = {step.pk: step for steps in steps_of.values() for step in steps}

    def attach(enrollment: Enrollment) -> None:
        enrollment.journey = journeys[enrollment.journey_id]
        if enrollment.current_step_id in step_by_id:
            enrollment.current_step = step_by_id[enrollment.current_step_id]

    for enrollment in enrollments:
        attach(enrollment)
    prefetch_related_objects(
        [e for e in enrollments if _reads_contact(steps_of[e.journey_id])], "contact"
    )
    prefetch_related_objects([e for e in enrollments if e.wake_event_id], "wake_event")

    deferred = Deferred()
    contacts_seen: set[int] = set()
    for enrollment in enrollments:
        if enrollment.contact_id in contacts_seen:
            # An earlier run in this transaction may have ended or woken this one (a survey
            # answer is an event for the same contact, and events read and write the
            # contact's enrollments): write what is deferred, read this one again (it is
            # locked by us).
            deferred.write()
            enrollment = live.filter(pk=enrollment.pk).first()
            if enrollment is None:
                continue
            attach(enrollment)
        contacts_seen.add(enrollment.contact_id)
        if _wait_not_over(enrollment, now):
            results[enrollment.pk] = "waiting"
            continue
        held = _held(enrollment, now)
        if held:
            results[enrollment.pk] = held
            continue
        run = Run(enrollment, steps_of[enrollment.journey_id], now, deferred)
        results[enrollment.pk] = _run(run)
    deferred.write()
    return results


def enrollments_claim_due(
    *, now: dt.datetime | None = None, limit: int, lease_seconds: int
) -> list[int]:
    """Claim due enrollments (SKIP LOCKED) by pushing next_run_at out by a lease; if the
    worker dies, the lease expires and the scheduler claims them again."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Enrollment.objects.select_for_update(skip_locked=True)
            .filter(state__in=Enrollment.LIVE_STATES, next_run_at__lte=now)
            .order_by("next_run_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Enrollment.objects.filter(pk__in=ids).update(
                next_run_at=now + dt.timedelta(seconds=lease_seconds)
            )
    return ids


def run_due(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Claim and advance everything due, inline (tests, demos, the dry-run clock)."""
    now = now or timezone.now()
    ids = enrollments_claim_due(now=now, limit=limit, lease_seconds=60)
    enrollments_advance(enrollment_ids=ids, now=now)
    return len(ids)
