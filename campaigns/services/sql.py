"""Small helpers for the set-based statements the broadcast services write by hand."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import connection, models

from messaging.models import Direction, Touchpoint

from ..models import Broadcast, BroadcastRecipient


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def db_datetime(value: dt.datetime) -> Any:
    """A datetime as the backend stores it (SQLite: naive UTC text), for raw SQL params."""
    return connection.ops.adapt_datetimefield_value(value)


def json_param() -> str:
    """The placeholder of a JSON value in a SELECT list (PostgreSQL's column is jsonb)."""
    return "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"


def touchpoint_data(broadcast: Broadcast, **data: Any) -> dict[str, Any]:
    return {"broadcast": broadcast.slug, "broadcast_name": broadcast.name, **data}


def recipients_touch(
    *, broadcast: Broadcast, kind: str, state: str, reason: str, now: dt.datetime
) -> int:
    """One timeline entry per recipient of `broadcast` in `state` with `reason`, in one
    INSERT … SELECT (the recipients were just moved there by one UPDATE). The dedupe key
    (broadcast, contact, outcome) makes a repeat write nothing."""
    tp, r = table(Touchpoint), table(BroadcastRecipient)
    outcome = kind.removeprefix("broadcast_")
    sql = (
        f"INSERT INTO {tp} (contact_id, channel, direction, kind, message_id, occurred_at, "  # noqa: S608
        f"data, dedupe_key, actor_id, created_at) "
        f"SELECT r.contact_id, '', %s, %s, NULL, %s, {json_param()}, "
        f"CAST(%s AS text) || CAST(r.contact_id AS text) || CAST(%s AS text), NULL, %s "
        f"FROM {r} AS r WHERE r.broadcast_id = %s AND r.state = %s AND r.reason = %s "
        f"ON CONFLICT (dedupe_key) DO NOTHING"
    )
    params = [
        Direction.INTERNAL.value,
        kind,
        db_datetime(now),
        json.dumps(touchpoint_data(broadcast, reason=reason)),
        f"bc:{broadcast.pk}:",
        f":{outcome}",
        db_datetime(now),
        broadcast.pk,
        state,
        reason,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
