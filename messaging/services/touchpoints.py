"""The contact's timeline: appending touchpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models.constants import OnConflict
from django.utils import timezone

from ..models import Direction, Touchpoint


def touchpoint_record(
    *,
    contact_id: int,
    kind: str,
    direction: str = Direction.INTERNAL,
    channel: str = "",
    message_id: uuid.UUID | str | None = None,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    actor_id: int | None = None,
    defer_to: list[Touchpoint] | None = None,
) -> None:
    """Append one timeline entry; a repeated dedupe key writes nothing. With `defer_to`, the
    row is appended to that list instead, for the caller to write with `touchpoints_write`
    in the same transaction."""
    row = Touchpoint(
        contact_id=contact_id,
        kind=kind,
        direction=direction,
        channel=channel,
        message_id=message_id,
        occurred_at=occurred_at or timezone.now(),
        data=data or {},
        dedupe_key=dedupe_key or f"tp:{uuid.uuid4().hex}",
        actor_id=actor_id,
    )
    if defer_to is not None:
        defer_to.append(row)
    else:
        touchpoints_write([row])


def touchpoints_write(rows: list[Touchpoint]) -> None:
    """Insert timeline entries in one statement; repeated dedupe keys write nothing.

    One row is inserted without bulk_create's transaction: outside a transaction (a link
    click) that saves the BEGIN and COMMIT round trips, and a single INSERT … ON CONFLICT DO
    NOTHING is atomic by itself, so nothing else changes."""
    if len(rows) == 1:
        _insert_one(rows[0])
    elif rows:
        Touchpoint.objects.bulk_create(rows, ignore_conflicts=True)


def _insert_one(row: Touchpoint) -> None:
    opts = Touchpoint._meta
    fields = [f for f in opts.concrete_fields if f is not opts.auto_field and not f.generated]
    Touchpoint._base_manager._insert([row], fields=fields, on_conflict=OnConflict.IGNORE)
