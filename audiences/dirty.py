"""Marking contacts whose dynamic segments need a fresh look (audiences/live.py drains
them). Marking is one plain INSERT after commit: no unique key, no foreign key, so it never
waits on a lock and never slows the path that changed the contact."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from .models import SegmentDirtyContact


def _insert(ids: list[int]) -> None:
    SegmentDirtyContact.objects.bulk_create([SegmentDirtyContact(contact_id=i) for i in ids])


def contacts_mark_changed(contact_ids: Iterable[int | None]) -> None:
    """Mark these contacts once the current transaction commits (at once outside one); a
    rolled-back change marks nothing. A mark lost to a crash is caught by the periodic
    full recompute."""
    if not settings.SEGMENT_LIVE_UPDATES:
        return
    ids = sorted({int(pk) for pk in contact_ids if pk is not None})
    if ids:
        transaction.on_commit(lambda: _insert(ids), robust=True)


def contacts_mark_changed_in_transaction(contacts: QuerySet) -> None:
    """Set-based, in the caller's transaction: mark every contact of `contacts` (a queryset
    of contacts or of their ids) with one INSERT … SELECT (imports, static segment lists)."""
    if not settings.SEGMENT_LIVE_UPDATES:
        return
    sql, params = contacts.order_by().values("pk").query.sql_with_params()
    table = connection.ops.quote_name(SegmentDirtyContact._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (contact_id) {sql}", params)
