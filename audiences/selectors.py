"""Reads for the segment admin: the builder's live preview and the size over time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from messaging.models import Contact

from .definition import definition_compile
from .models import Segment, SegmentSize
from .services import segment_validate

PREVIEW_SAMPLE = 10


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[Contact]


def segment_preview(
    *, definition: Any, slug: str | None, now: dt.datetime, sample: int = PREVIEW_SAMPLE
) -> Preview:
    """How many contacts an unsaved dynamic definition matches now, and the newest few:
    validated first (DefinitionError with field-level errors), then two queries, bounded by
    SEGMENT_PREVIEW_TIMEOUT_SECONDS on PostgreSQL (OperationalError past it)."""
    segment_validate(definition=definition, kind=Segment.Kind.DYNAMIC, slug=slug)
    q = definition_compile(definition, now=now, slug=slug or "")
    matching = Contact.objects.filter(erased_at__isnull=True).filter(q)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            timeout_ms = int(settings.SEGMENT_PREVIEW_TIMEOUT_SECONDS * 1000)
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms:d}")
        count = matching.order_by().count()
        contacts = list(matching.order_by("-id")[:sample]) if count and sample else []
    return Preview(count=count, sample=contacts)


def segment_size_history(
    *, segment: Segment, now: dt.datetime, days: int = 30
) -> list[tuple[dt.datetime, int]]:
    """(hour, member count) samples of the last `days` days, oldest first: one query, at
    most 24 × days rows whatever the number of members."""
    return list(
        SegmentSize.objects.filter(segment=segment, at__gte=now - dt.timedelta(days=days))
        .order_by("at")
        .values_list("at", "member_count")
    )
