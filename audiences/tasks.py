"""Celery tasks for audiences: thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import live, services

# A beat task: each segment is one set-based statement, so a run is short.
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 600, "soft_time_limit": 540}
# The live task runs every few seconds; a run stops early and leaves the rest to the next.
LIVE_TASK_OPTIONS = {"ignore_result": True, "time_limit": 120, "soft_time_limit": 100}


@shared_task(name="audiences.recompute_segments", **BEAT_TASK_OPTIONS)
def recompute_segments() -> int:
    """Recompute every dynamic segment (beat, every SEGMENT_RECOMPUTE_INTERVAL_SECONDS)."""
    done = services.segments_recompute_all(now=timezone.now())
    live.segment_changes_emit()
    return done


@shared_task(name="audiences.recompute_segment", **BEAT_TASK_OPTIONS)
def recompute_segment(segment_id: int) -> int:
    """Recompute one dynamic segment now (its definition was just saved)."""
    segment = services.Segment.objects.filter(
        pk=segment_id, kind=services.Segment.Kind.DYNAMIC
    ).first()
    if segment is None:
        return 0
    services.segment_recompute(segment=segment, now=timezone.now())
    live.segment_changes_emit()
    return 1


@shared_task(name="audiences.apply_changed_contacts", **LIVE_TASK_OPTIONS)
def apply_changed_contacts() -> int:
    """Beat (every SEGMENT_LIVE_INTERVAL_SECONDS): evaluate the dynamic segments for the
    contacts that changed, then hand entries and exits to journeys."""
    evaluated = live.segments_apply_changed()
    emitted = live.segment_changes_emit()
    return evaluated + emitted


from .import_tasks import resume_stalled_imports, run_import, validate_import  # noqa: E402,F401
