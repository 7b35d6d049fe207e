"""Live segments: the contacts marked as changed (audiences/dirty.py) are drained in
batches and every dynamic segment is evaluated again for just that batch, one set-based
statement per segment; then every logged entry and exit is handed, exactly once in effect,
to the apps that listen (journeys' "enters / leaves segment" triggers).

Concurrency: a batch locks the dynamic segments' rows (in id order) as `segment_recompute`
locks its one, so a batch and a full recompute of the same segment run one after the other
and each statement sees what the other committed: no entry is logged twice, no exit lost.
One drain runs at a time (a transaction-scoped advisory lock); a second one finds it held
and leaves (the beat comes again in a few seconds).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config import task_limits

from .models import Segment, SegmentDirtyContact, SegmentMembershipChange
from .services import membership_apply, segment_members, segment_sizes_record
from .signals import SegmentChange, segment_membership_changed

logger = logging.getLogger(__name__)

# Seconds a batch may take, worst case, before a beat run stops to leave the rest to the next.
BATCH_SECONDS = 20.0
EMIT_BATCH = 1000


def _drain_lock() -> bool:
    """Hold the one drain's lock until the transaction ends; False if another holds it."""
    if connection.vendor != "postgresql":
        return True  # SQLite: IMMEDIATE transactions already run one writer at a time
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext('touchline:segments-live'))")
        return bool(cursor.fetchone()[0])


def segments_evaluate_contacts(*, contact_ids: list[int], now: dt.datetime) -> dict[int, int]:
    """In the caller's transaction: bring every dynamic segment's membership up to date for
    these contacts only (entries and exits logged). One statement per segment plus one lock
    statement; a segment whose definition cannot be evaluated is logged and skipped (the full
    recompute reports it too). Returns {segment id: new member count} for those that changed."""
    changed: dict[int, int] = {}
    if not contact_ids:
        return changed
    segments = Segment.objects.select_for_update().filter(kind=Segment.Kind.DYNAMIC)
    for segment in segments.order_by("pk"):
        try:
            with transaction.atomic():
                entered, left = membership_apply(
                    segment=segment,
                    matching=segment_members(segment=segment, now=now),
                    now=now,
                    remove=True,
                    scope=contact_ids,
                )
        except DatabaseError:
            raise  # the whole batch again later (a lock timeout, a lost connection)
        except Exception:
            logger.exception("Segment %s could not be evaluated for changed contacts", segment.slug)
            continue
        if entered or left:
            Segment.objects.filter(pk=segment.pk).update(
                member_count=F("member_count") + entered - left
            )
            changed[segment.pk] = max(0, segment.member_count + entered - left)
    segment_sizes_record(sizes=changed, now=now)
    return changed


def segments_apply_changed(*, batch_size: int | None = None, max_batches: int = 100) -> int:
    """Drain the changed contacts, oldest marks first, a batch per transaction (the marks
    are deleted in the same transaction, so a failed batch leaves them for the next run).
    Returns the number of distinct contacts evaluated."""
    size = batch_size or settings.SEGMENT_LIVE_BATCH_SIZE
    done = 0
    for number in range(max_batches):
        if number and not task_limits.has_time(BATCH_SECONDS):
            break
        with transaction.atomic():
            if not _drain_lock():
                break
            marks = list(
                SegmentDirtyContact.objects.select_for_update(skip_locked=True)
                .order_by("id")
                .values_list("id", "contact_id")[:size]
            )
            if not marks:
                break
            SegmentDirtyContact.objects.filter(id__in=[m[0] for m in marks]).delete()
            contacts = sorted({m[1] for m in marks})
            segments_evaluate_contacts(contact_ids=contacts, now=timezone.now())
        done += len(contacts)
        if len(marks) < size:
            break
    return done


def segment_changes_emit(*, batch_size: int = EMIT_BATCH, max_batches: int = 50) -> int:
    """Hand logged entries and exits not yet handed on to the listeners
    (`signals.segment_membership_changed`), oldest first, then mark them emitted — in one
    transaction per batch, so a crash before the commit hands them on again and the
    listeners' idempotency (on the change's id) keeps the effect single. Returns how many."""
    emitted = 0
    for number in range(max_batches):
        if number and not task_limits.has_time(BATCH_SECONDS):
            break
        with transaction.atomic():
            rows = list(
                SegmentMembershipChange.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(emitted_at__isnull=True)
                .order_by("id")
                .values_list("id", "segment__slug", "contact_id", "change", "at")[:batch_size]
            )
            if not rows:
                break
            changes = [SegmentChange(*row) for row in rows]
            segment_membership_changed.send(sender=Segment, changes=changes)
            SegmentMembershipChange.objects.filter(pk__in=[c.id for c in changes]).update(
                emitted_at=timezone.now()
            )
        emitted += len(rows)
        if len(rows) < batch_size:
            break
    return emitted
