"""Building and launching journeys: copies and new versions, activation, pause and archive
(the admin's actions call these)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from messaging.conversion import CONVERSION_FIELDS

from .models import Enrollment, Journey, Step

LIVE = Enrollment.LIVE_STATES


def journey_copy(*, journey: Journey, slug: str | None = None, name: str | None = None) -> Journey:
    """A draft copy with the same steps: a new version of the same slug when `slug` is None,
    else a separate journey (the admin's "duplicate")."""
    with transaction.atomic():
        if slug is None:
            latest = (
                Journey.objects.filter(slug=journey.slug)
                .order_by("-version")
                .values_list("version", flat=True)
                .first()
            )
            slug, version = journey.slug, (latest or 0) + 1
        else:
            version = 1
        copy = Journey.objects.create(
            name=name or journey.name,
            slug=slug,
            description=journey.description,
            status=Journey.Status.DRAFT,
            trigger_event=journey.trigger_event,
            trigger_filter=journey.trigger_filter,
            entry_policy=journey.entry_policy,
            goal_event=journey.goal_event,
            goal_match=journey.goal_match,
            exit_event=journey.exit_event,
            exit_match=journey.exit_match,
            entry_key=journey.entry_key,
            category=journey.category,
            topic_id=journey.topic_id,
            quiet_hours_start=journey.quiet_hours_start,
            quiet_hours_end=journey.quiet_hours_end,
            frequency_cap_action=journey.frequency_cap_action,
            holdout_percent=journey.holdout_percent,
            **{name: getattr(journey, name) for name in CONVERSION_FIELDS},
            version=version,
        )
        Step.objects.bulk_create(
            [
                Step(
                    journey=copy,
                    position=s.position,
                    key=s.key,
                    kind=s.kind,
                    config=s.config,
                    next_step=s.next_step,
                )
                for s in journey.steps.all()
            ]
        )
    return copy


def journey_activate(*, journey: Journey) -> list[str]:
    """Validate and activate; a previous active version of the same slug is archived, and
    its running enrollments finish on the steps they started with. Returns the problems
    that prevented activation (empty on success)."""
    from .validation import journey_problems

    problems = journey_problems(journey)
    if problems:
        return problems
    with transaction.atomic():
        Journey.objects.filter(slug=journey.slug, status=Journey.Status.ACTIVE).exclude(
            pk=journey.pk
        ).update(status=Journey.Status.ARCHIVED)
        journey.status = Journey.Status.ACTIVE
        journey.save(update_fields=["status", "updated_at"])
        # Enrollments held while the journey was paused start moving again.
        # (the engine's early-wake check sends waits that are not over back to sleep)
        Enrollment.objects.filter(
            journey=journey, state__in=LIVE, next_run_at__isnull=False
        ).update(next_run_at=timezone.now())
    return []


def journey_set_status(*, journey: Journey, status: str) -> None:
    """Pause (running enrollments hold where they are) or archive (no new entries; running
    enrollments finish)."""
    journey.status = status
    journey.save(update_fields=["status", "updated_at"])
