"""Attribution in one PostgreSQL statement: find the winning touch (the latest click of a
last-click owner's message UNION ALL the latest delivery, clicks first), insert the Conversion
and the `converted` touchpoint (both ignoring conflicts) in data-modifying CTEs, and return the
credit — one round trip and no ORM query building on the ingest path. Same rules as
insights.attribution's ORM path (used on SQLite); the tests run both."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import connection

from .selectors import Owner

_OWNER_COLUMN = {"journey": "jm.journey_id", "broadcast": "br.broadcast_id"}


def _owned_since(owners: list[Owner], at: dt.datetime, params: list[Any]) -> str:
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for owner in owners:
        groups[(owner.kind, owner.window_hours)].append(owner.id)
    parts = []
    for (kind, hours), ids in groups.items():
        parts.append(
            f"({_OWNER_COLUMN[kind]} = ANY(%s) AND COALESCE(m.sent_at, m.created_at) >= %s)"
        )
        params += [ids, at - dt.timedelta(hours=hours)]
    return " OR ".join(parts)


JOINS = """LEFT JOIN journeys_journeymessage jm ON jm.message_id = m.id
    LEFT JOIN campaigns_broadcastrecipient br ON br.message_id = m.id"""


# Every f-string below joins constant SQL and placeholders only; values go in `params`.


def attribute_sql(
    *,
    event_id: int,
    event_name: str,
    contact_id: int,
    at: dt.datetime,
    now: dt.datetime,
    owners: list[Owner],
    clickers: list[Owner],
    revenue: dict[tuple[str, int], Decimal | None],
    currency: str,
) -> tuple[Any, ...] | None:
    """(rank, message id, touched, journey, step, broadcast, model, revenue) of the credit
    written for this event, or None when no message earned it."""
    params: list[Any] = []
    halves = []
    if clickers:
        longest = max(owner.window_hours for owner in clickers)
        params += [contact_id, at, at - dt.timedelta(hours=longest), at]
        halves.append(
            f"""SELECT 1 AS rank, m.id AS message_id, t.occurred_at AS touched, jm.journey_id,
        jm.step_id, br.broadcast_id, m.template_id, m.channel
    FROM messaging_touchpoint t JOIN messaging_message m ON m.id = t.message_id
    {JOINS}
    WHERE t.contact_id = %s AND t.kind = 'clicked' AND t.occurred_at <= %s
        AND t.occurred_at >= %s AND m.created_at <= %s AND ({_owned_since(clickers, at, params)})"""  # noqa: S608
        )
    params += [contact_id, at, at]
    halves.append(
        f"""SELECT 0 AS rank, m.id AS message_id, COALESCE(m.delivered_at, m.read_at) AS touched,
        jm.journey_id, jm.step_id,
        br.broadcast_id, m.template_id, m.channel
    FROM messaging_message m
    {JOINS}
    WHERE m.contact_id = %s AND m.direction = 'outbound' AND m.status IN ('delivered', 'read')
        AND m.created_at <= %s AND COALESCE(m.delivered_at, m.read_at) <= %s
        AND ({_owned_since(owners, at, params)})"""  # noqa: S608
    )
    values = ", ".join(["(%s::text, %s::bigint, %s::text, %s::numeric)"] * len(owners))
    for owner in owners:
        params += [owner.kind, owner.id, owner.model, revenue[(owner.kind, owner.id)]]
    touch = "CASE WHEN rank = 1 THEN 'clicked' ELSE 'delivered' END"
    params += [event_id, contact_id, event_name, currency, at, now]
    params += [contact_id, at, event_name, event_id, currency, f"conversion:{event_id}", now]
    sql = f"""WITH credit AS (
    SELECT * FROM ({" UNION ALL ".join(halves)}) AS candidates
    ORDER BY rank DESC, touched DESC, message_id DESC LIMIT 1
), owned AS (
    SELECT credit.*, o.model, o.revenue
    FROM credit JOIN (VALUES {values}) AS o(kind, id, model, revenue)
        ON (o.kind = 'journey' AND o.id = credit.journey_id)
        OR (o.kind = 'broadcast' AND o.id = credit.broadcast_id)
), conversion AS (
    INSERT INTO insights_conversion (event_id, contact_id, message_id, journey_id, step_id,
        broadcast_id, template_id, channel, model, touch, event_name, revenue, currency,
        occurred_at, touched_at, created_at)
    SELECT %s, %s, message_id, journey_id, step_id, broadcast_id, template_id, channel, model,
        {touch}, %s, revenue, %s, %s, touched, %s FROM owned
    ON CONFLICT (event_id) DO NOTHING
), touchpoint AS (
    INSERT INTO messaging_touchpoint (contact_id, channel, direction, kind, message_id,
        occurred_at, data, dedupe_key, created_at)
    SELECT %s, channel, 'internal', 'converted', message_id, %s, jsonb_build_object(
            'event', %s::text, 'event_id', %s::bigint, 'journey', journey_id, 'step', step_id,
            'broadcast', broadcast_id, 'model', model, 'touch', {touch},
            'revenue', revenue::text, 'currency', %s::text),
        %s, %s FROM owned
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT rank, message_id, touched, journey_id, step_id, broadcast_id, model, revenue FROM owned"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
