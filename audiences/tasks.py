"""Celery tasks for audiences: thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import services

# A beat task: each segment is one set-based statement, so a run is short.
BEAT_TASK_OPTIONS = {"ignore_result": True, "time_limit": 600, "soft_time_limit": 540}


@shared_task(name="audiences.recompute_segments", **BEAT_TASK_OPTIONS)
def recompute_segments() -> int:
    """Recompute every dynamic segment (beat, every SEGMENT_RECOMPUTE_INTERVAL_SECONDS)."""
    return services.segments_recompute_all(now=timezone.now())


from .import_tasks import resume_stalled_imports, run_import, validate_import  # noqa: E402,F401
