"""Marking contacts whose dynamic segments need a fresh look (audiences/live.py drains
them). Marking is one plain INSERT in the transaction that changed the contact: no unique
key and no foreign key, so it never waits on a lock, it commits (or rolls back) with the
change, and it costs no commit of its own (bench/segment_live.py)."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from .models import SegmentDirtyContact


def _insert(ids: list[int]) -> None:
    if connection.vendor == "postgresql" and len(ids) > 1:
        # One statement whatever the number (an import batch marks thousands at once); the
        # ids as one array literal, not psycopg's array adapter (Python, per element).
        table = connection.ops.quote_name(SegmentDirtyContact._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (contact_id) SELECT unnest(%s::bigint[])",
                ["{" + ",".join(map(str, ids)) + "}"],
            )
        return
    SegmentDirtyContact.objects.bulk_create([SegmentDirtyContact(contact_id=i) for i in ids])


def contacts_mark_changed(contact_ids: Iterable[int | None]) -> None:
    """Mark these contacts in the current transaction (the drain sees the marks when the
    change commits; a rolled-back change marks nothing). Listeners of messaging's signals,
    which are sent after commit, mark in a transaction of their own; a mark lost to a crash
    between the two is caught by the periodic full recompute."""
    if not settings.SEGMENT_LIVE_UPDATES:
        return
    ids = sorted({int(pk) for pk in contact_ids if pk is not None})
    if ids:
        _insert(ids)


def contacts_mark_changed_in_transaction(contacts: QuerySet) -> None:
    """Set-based, in the caller's transaction: mark every contact of `contacts` (a queryset
    of contacts or of their ids) with one INSERT … SELECT (imports, static segment lists)."""
    if not settings.SEGMENT_LIVE_UPDATES:
        return
    sql, params = contacts.order_by().values("pk").query.sql_with_params()
    table = connection.ops.quote_name(SegmentDirtyContact._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (contact_id) {sql}", params)
