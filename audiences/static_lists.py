"""Static segments filled from a CSV: add or remove the contacts a file names (by
external_id, else email, else phone), logging entered/left like every membership change.
Set-based per batch of rows; never a query per contact."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from channels_app.channels import normalize_phone
from messaging.input_rules import text_problem
from messaging.models import Contact

from .dirty import contacts_mark_changed_in_transaction
from .imports.reader import FileError, batches, read_header
from .models import Segment, SegmentMembership, SegmentMembershipChange
from .services import static_segment_add

KEY_COLUMNS = ("external_id", "email", "phone")
FIRST_ERRORS = 20


class StaticListError(ValueError):
    """The file cannot be used (no key column, not CSV, a dynamic segment)."""


@dataclass
class StaticListResult:
    rows: int = 0
    matched: int = 0
    changed: int = 0  # contacts added or removed
    unmatched: int = 0
    errors: list[str] = field(default_factory=list)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _store_count(segment: Segment) -> None:
    counted = (
        SegmentMembership.objects.filter(segment=OuterRef("pk"))
        .order_by()
        .values("segment")
        .annotate(n=Count("pk"))
        .values("n")
    )
    Segment.objects.filter(pk=segment.pk).update(member_count=Coalesce(Subquery(counted), Value(0)))


@transaction.atomic
def static_segment_remove(
    *, segment: Segment, contacts: QuerySet[Contact], now: dt.datetime
) -> int:
    """Take `contacts` out of a static segment, logging `left` for each one who was in it."""
    if segment.kind != Segment.Kind.STATIC:
        raise ValueError("only static segments take contacts by hand")
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    sql, params = contacts.order_by().values("id").query.sql_with_params()
    m, h = _table(SegmentMembership), _table(SegmentMembershipChange)
    # (S608: only table names and Django's compiled SQL are formatted in; values are params.)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH gone AS (DELETE FROM {m} WHERE segment_id = %s AND contact_id IN "  # noqa: S608
                f"({sql}) RETURNING contact_id) INSERT INTO {h} (segment_id, contact_id, "
                f"change, at) SELECT %s, contact_id, 'left', %s FROM gone",
                [segment.pk, *params, segment.pk, now],
            )
            removed = cursor.rowcount
        else:  # SQLite: the write lock is held for the transaction, both see the same rows
            cursor.execute(
                f"INSERT INTO {h} (segment_id, contact_id, change, at) SELECT %s, contact_id, "  # noqa: S608
                f"'left', %s FROM {m} WHERE segment_id = %s AND contact_id IN ({sql})",
                [segment.pk, now, segment.pk, *params],
            )
            removed = cursor.rowcount
            cursor.execute(
                f"DELETE FROM {m} WHERE segment_id = %s AND contact_id IN ({sql})",  # noqa: S608
                [segment.pk, *params],
            )
    _store_count(segment)
    # Segments that include this one may no longer match these contacts.
    contacts_mark_changed_in_transaction(contacts.values("pk"))
    return removed


def _row_keys(cells: list[str], columns: dict[str, int]) -> tuple[str, str] | None:
    """The row's key: ("external_id", value), else email, else phone; None if empty;
    ValidationError for a value no text column can hold (a NUL byte, a lone surrogate)."""
    for key in KEY_COLUMNS:
        index = columns.get(key)
        value = cells[index].strip() if index is not None and index < len(cells) else ""
        if not value:
            continue
        problem = text_problem(value)
        if problem:
            raise ValidationError(f"{key}: {problem}")
        if key == "email":
            return key, value.lower()
        if key == "phone":
            return key, normalize_phone(value)
        return key, value
    return None


def static_list_apply(
    *,
    segment: Segment,
    binary: IO[bytes],
    operation: str,
    now: dt.datetime,
    batch_size: int | None = None,
) -> StaticListResult:
    """Add (`operation="add"`) or remove the contacts a CSV names, in one transaction: a
    file with errors in some rows still applies its good rows (the errors are returned);
    a file that cannot be read changes nothing."""
    if segment.kind != Segment.Kind.STATIC:
        raise StaticListError("Only static segments take a list; dynamic ones follow their rules.")
    if operation not in ("add", "remove"):
        raise StaticListError("Choose add or remove.")
    try:
        header = [column.lower() for column in read_header(binary)]
    except FileError as exc:
        raise StaticListError(str(exc)) from None
    columns = {name: index for index, name in enumerate(header) if name in KEY_COLUMNS}
    if not columns:
        raise StaticListError("The header needs an external_id, email or phone column.")
    binary.seek(0)
    result = StaticListResult()
    size = batch_size or settings.IMPORT_BATCH_SIZE
    try:
        with transaction.atomic():
            for rows in batches(binary, skip=0, size=size):
                _apply_batch(segment, rows, columns, operation, now, result)
    except FileError as exc:
        raise StaticListError(str(exc)) from None
    return result


def _apply_batch(segment, rows, columns, operation, now, result: StaticListResult) -> None:
    wanted: dict[str, set[str]] = {key: set() for key in KEY_COLUMNS}
    for row in rows:
        result.rows += 1
        try:
            key = _row_keys(row.cells, columns)
        except ValidationError as exc:
            key = None
            if len(result.errors) < FIRST_ERRORS:
                result.errors.append(f"Line {row.line}: {' '.join(exc.messages)}")
            result.unmatched += 1
            continue
        if key is None:
            result.unmatched += 1
            continue
        wanted[key[0]].add(key[1])
    query = Q(external_id__in=wanted["external_id"]) | Q(email__in=wanted["email"])
    query |= Q(phone__in=wanted["phone"])
    contacts = Contact.objects.filter(query, erased_at__isnull=True)
    found = {key: set() for key in KEY_COLUMNS}
    for ext, email, phone in contacts.values_list(*KEY_COLUMNS):  # at most one batch's worth
        found["external_id"].add(ext)
        found["email"].add(email)
        found["phone"].add(phone)
    matched = sum(len(values & found[key]) for key, values in wanted.items())
    result.matched += matched
    result.unmatched += sum(len(values) for values in wanted.values()) - matched
    if operation == "add":
        result.changed += static_segment_add(segment=segment, contacts=contacts, now=now)
    else:
        result.changed += static_segment_remove(segment=segment, contacts=contacts, now=now)
