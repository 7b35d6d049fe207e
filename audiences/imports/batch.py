"""One batch of import rows: parse the cells, match rows to contacts (external id, else
email, else phone), work out what changes, and (unless a dry run) write it — in a fixed
number of statements per batch whatever the number of contacts or rows."""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models
from django.db.models import F, Lookup, Q
from django.utils import timezone

from messaging.input_rules import text_problem
from messaging.models import Consent, ConsentSource, ConsentStatus, Contact
from messaging.services.consent import consent_set_many

from ..dirty import contacts_mark_changed
from .mapping import CellError, Target, converter
from .reader import Row

# A provider's verdict on an address stops counting once the address changes
# (as messaging.services.contacts does for the API).
ADDRESS_FLAGS = {
    "email": "email_undeliverable",
    "phone": "phone_invalid",
    "whatsapp": "whatsapp_invalid",
}
RESUBSCRIBE_REFUSED = (
    "Not changed: the contact unsubscribed from this channel, and an import never "
    "resubscribes anyone (they must opt in again themselves)."
)


@dataclass
class Parsed:
    line: int
    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_rows: int = 0
    consent_changes: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, message)


def parse_rows(
    rows: list[Row], targets: list[tuple[int, str, Target]], width: int, result: BatchResult
) -> list[Parsed]:
    """Each row's values by target; a row with a bad cell is left out (all its errors
    reported), so a row is applied whole or not at all."""
    parsed = []
    # Per column: where its value goes, and its check (mapping.convert, chosen once).
    columns = [
        (index, column, target.kind, target.name, converter(target))
        for index, column, target in targets
    ]
    errors = result.errors
    for row in rows:
        cells = row.cells
        if len(cells) != width:
            message = f"{len(cells)} cells, but the header has {width} columns."
            errors.append((row.line, "", message))
            result.error_rows += 1
            continue
        item, bad = Parsed(row.line), False
        for index, column, kind, name, check in columns:
            raw = cells[index].strip()
            if not raw:
                continue  # an empty cell changes nothing
            try:
                if "\x00" in raw or not raw.isascii():
                    problem = text_problem(raw)
                    if problem:
                        raise CellError(problem)
                value = check(raw)
            except CellError as exc:
                errors.append((row.line, column, str(exc)[:500]))
                bad = True
                continue
            if kind == "field":
                item.fields[name] = value
            elif kind == "attribute":
                item.attributes[name] = value
            else:
                item.consent[name] = value
        found = item.fields
        if not bad and not (found.get("external_id") or found.get("email") or found.get("phone")):
            errors.append((row.line, "", "No external_id, email or phone to match on."))
            bad = True
        if bad:
            result.error_rows += 1
        else:
            parsed.append(item)
    return parsed


class _AnyOf(Lookup):
    """`column = ANY('{…}'::text[])`, the values as one array literal: the rows `__in` finds,
    without compiling and quoting one placeholder per value (2,000 a batch), nor psycopg's
    array adapter (Python, ~1.5 µs a value). A constant array, so the planner knows its size
    (a computed one, e.g. from JSON, made it pick a sequential scan on a growing table)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::text[])", [*lhs_params, _array_literal(self.rhs)]


def _array_literal(values: Iterable[str]) -> str:
    """PostgreSQL's text form of a text[]: each element double-quoted, with backslash before
    `\\` and `"` (inside quotes every other character stands for itself)."""
    return (
        "{"
        + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
        + "}"
    )


def _among(name: str, values: set[str]) -> Q:
    """Rows whose `name` is one of `values`."""
    if connection.vendor == "postgresql":
        return Q(_AnyOf(F(name), sorted(values)))
    return Q(**{f"{name}__in": values})


class _Index:
    """The batch's contacts by upsert key; contacts created by earlier rows of the batch are
    added, so a later row for the same person updates that one."""

    def __init__(self, rows: list[Parsed], *, lock: bool) -> None:
        live = Contact.objects.filter(erased_at__isnull=True).order_by("id")
        if lock:
            live = live.select_for_update()
        wanted = {
            key: {p.fields[key] for p in rows if key in p.fields}
            for key in ("external_id", "email", "phone")
        }
        # One query for the three keys (oldest first: with several contacts on one address,
        # the oldest is updated); each contact is one object, whichever key found it.
        conditions = [_among(key, values) for key, values in wanted.items() if values]
        found = list(live.filter(functools.reduce(operator.or_, conditions))) if conditions else []
        ext_ids = wanted["external_id"]
        self.by_ext: dict[str, Contact] = {
            c.external_id: c for c in found if c.external_id in ext_ids
        }
        unmatched = [p for p in rows if p.fields.get("external_id") not in self.by_ext]
        self.any: dict[str, dict[str, Contact]] = {"email": {}, "phone": {}}
        self.free: dict[str, dict[str, Contact]] = {"email": {}, "phone": {}}  # no external id
        for key in ("email", "phone"):
            values = {p.fields[key] for p in unmatched if key in p.fields}
            if values:
                for contact in found:
                    if getattr(contact, key) in values:
                        self._add(key, contact)

    def _add(self, key: str, contact: Contact) -> None:
        value = getattr(contact, key)
        if value:
            self.any[key].setdefault(value, contact)
            if contact.external_id is None:
                self.free[key].setdefault(value, contact)

    def find(self, row: Parsed) -> Contact | None:
        ext = row.fields.get("external_id")
        if ext and ext in self.by_ext:
            return self.by_ext[ext]
        # A row with an external id only takes a contact that has none yet.
        pool = self.free if ext else self.any
        for key in ("email", "phone"):
            value = row.fields.get(key)
            if value and value in pool[key]:
                return pool[key][value]
        return None

    def keep(self, contact: Contact) -> None:
        """Index a contact under its (possibly new) keys (once a row, so spelled out)."""
        ext, email, phone = contact.external_id, contact.email, contact.phone
        free_email, free_phone = self.free["email"], self.free["phone"]
        if ext:
            self.by_ext.setdefault(ext, contact)
            if free_email.get(email) is contact:
                del free_email[email]
            if free_phone.get(phone) is contact:
                del free_phone[phone]
        if email:
            self.any["email"].setdefault(email, contact)
            if ext is None:
                free_email.setdefault(email, contact)
        if phone:
            self.any["phone"].setdefault(phone, contact)
            if ext is None:
                free_phone.setdefault(phone, contact)


def _apply(contact: Contact, row: Parsed) -> set[str]:
    """Set the row's values on `contact`; the names of the fields that changed."""
    changed = set()
    for name, value in row.fields.items():
        if getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.add(name)
            flag = ADDRESS_FLAGS.get(name)
            if flag and getattr(contact, flag):
                setattr(contact, flag, False)
                changed.add(flag)
    if row.attributes:
        merged = {**(contact.attributes or {}), **row.attributes}
        if merged != (contact.attributes or {}):
            contact.attributes = merged
            changed.add("attributes")
    return changed


def process_batch(
    rows: list[Row],
    *,
    targets: list[tuple[int, str, Target]],
    width: int,
    dry_run: bool,
    consent_note: str = "",
    actor_id: int | None = None,
) -> BatchResult:
    """Match, compare and (unless `dry_run`) write one batch; call inside a transaction."""
    result = BatchResult()
    parsed = parse_rows(rows, targets, width, result)
    # Read without locks: most rows of a re-run change nothing, and those are never locked
    # or written. The contacts that do change are locked and the rows re-applied below.
    index = _Index(parsed, lock=False)
    existing_ids = {
        c.pk
        for group in (index.by_ext, index.any["email"], index.any["phone"])
        for c in group.values()
    }
    consents: dict[tuple[int, str], str] = {}
    if existing_ids and any(p.consent for p in parsed):
        consents = {
            (contact_id, channel): status
            for contact_id, channel, status in Consent.objects.filter(
                contact_id__in=existing_ids
            ).values_list("contact_id", "channel", "status")
        }
    created: list[Contact] = []
    changed_fields: dict[int, set[str]] = {}  # by id(contact): what to UPDATE
    contacts: dict[int, Contact] = {}
    rows_of: dict[int, list[Parsed]] = {}  # by id(contact), existing contacts only
    wanted: dict[tuple[int, str], str] = {}  # (id(contact), channel) -> status
    new_contact = _new_contact_type()
    for row in parsed:
        contact = index.find(row)
        if contact is None:
            contact = new_contact()
            # _apply on a new contact: its fields are the row's, its attributes merged in.
            vars(contact).update(row.fields)
            if row.attributes:
                contact.attributes = {**(contact.attributes or {}), **row.attributes}
            created.append(contact)
            contacts[id(contact)] = contact
            index.keep(contact)
            outcome = "created"
        else:
            if contact.pk is not None:
                rows_of.setdefault(id(contact), []).append(row)
            changes = _apply(contact, row)
            if changes:
                contacts[id(contact)] = contact
                if contact.pk is not None:
                    changed_fields.setdefault(id(contact), set()).update(changes)
                index.keep(contact)
            outcome = "updated" if changes else "unchanged"
        for channel, status in row.consent.items():
            key = (id(contact), channel)
            current = wanted.get(key) or consents.get((contact.pk, channel), ConsentStatus.UNKNOWN)
            if current == status:
                continue
            if current == ConsentStatus.UNSUBSCRIBED and status == ConsentStatus.SUBSCRIBED:
                result.errors.append((row.line, f"consent.{channel}", RESUBSCRIBE_REFUSED))
                continue
            wanted[key] = status
            contacts[id(contact)] = contact
            if outcome == "unchanged":
                outcome = "updated"
        setattr(result, outcome, getattr(result, outcome) + 1)
    result.consent_changes = len(wanted)
    if dry_run:
        return result
    now = timezone.now()
    insert_contacts(created, now=now)
    changed_ids = [contact.pk for contact in created]
    if changed_fields:
        changed_ids += _update_locked(
            {contacts[key].pk: rows_of[key] for key in changed_fields}, now=now
        )
    if wanted:
        changed_ids += [contacts[key].pk for key, _ in wanted]
        consent_set_many(
            changes={
                (contacts[key].pk, channel): status for (key, channel), status in wanted.items()
            },
            source=ConsentSource.IMPORT,
            note=consent_note,
            actor_id=actor_id,
            occurred_at=now,
            never_resubscribe=True,
        )
    # Their dynamic segments are looked at again by the live task: one INSERT a batch, in
    # the batch's transaction (a rolled-back batch marks nothing).
    contacts_mark_changed(changed_ids)
    return result


def _update_locked(rows_by_pk: dict[int, list[Parsed]], *, now: dt.datetime) -> list[int]:
    """Lock the contacts that change, apply their rows again to what is stored now (a
    concurrent change is not overwritten with a stale copy), and UPDATE what differs;
    returns the ids updated."""
    fresh = Contact.objects.select_for_update().filter(pk__in=rows_by_pk, erased_at__isnull=True)
    to_update, names = [], set()
    for contact in fresh.order_by("pk"):
        changes = set()
        for row in rows_by_pk[contact.pk]:
            changes |= _apply(contact, row)
        if changes:
            contact.updated_at = now
            to_update.append(contact)
            names |= changes
    if to_update:
        Contact.objects.bulk_update(to_update, [*sorted(names), "updated_at"], batch_size=500)
    return [contact.pk for contact in to_update]


@functools.cache
def _new_contact_type() -> type:
    """A contact still to be created: the model's field defaults as class attributes, the
    row's values set on it (a Contact() costs more than all the rest of a row's work)."""
    defaults = {f.attname: f.get_default() for f in Contact._meta.concrete_fields}
    defaults["created_via"] = Contact.CreatedVia.IMPORT.value
    return type("NewContact", (), {**defaults, "pk": None})


# Below this many new contacts the ORM's INSERT is as quick as COPY.
COPY_FROM = 50


def insert_contacts(created: list[Any], *, now: dt.datetime) -> None:
    """INSERT the batch's new contacts, setting their primary keys. On PostgreSQL: ids drawn
    from the table's sequence in one statement, then one COPY (the ORM's multi-row INSERT
    costs more than the rest of the import together)."""
    for contact in created:
        contact.created_at = contact.updated_at = now
    if connection.vendor != "postgresql" or len(created) < COPY_FROM:
        names = [f.attname for f in Contact._meta.concrete_fields if not f.primary_key]
        rows = [Contact(**{name: getattr(c, name) for name in names}) for c in created]
        Contact.objects.bulk_create(rows)
        for contact, row in zip(created, rows, strict=True):
            contact.pk = row.pk
        return
    table = Contact._meta.db_table
    pk_field = Contact._meta.pk
    fields = [f for f in Contact._meta.concrete_fields if not f.primary_key]
    with connection.cursor() as cursor:
        # The sequence looked up once (OFFSET 0 keeps the subquery from being folded in):
        # pg_get_serial_sequence() for every id took 5 ms a batch instead of 1.
        cursor.execute(
            "SELECT nextval(s.seq) FROM (SELECT pg_get_serial_sequence(%s, %s)::regclass"
            " AS seq OFFSET 0) AS s, generate_series(1, %s)",
            [table, pk_field.column, len(created)],
        )
        for contact, (pk,) in zip(created, cursor.fetchall(), strict=True):
            contact.pk = pk
        columns = ", ".join(connection.ops.quote_name(f.column) for f in [pk_field, *fields])
        values_of = operator.attrgetter("pk", *(f.attname for f in fields))
        # Positions (in a row, after the pk) of the JSON columns: COPY takes their text.
        json_at = [i for i, f in enumerate(fields, 1) if isinstance(f, models.JSONField)]
        dumps = json.dumps
        copy_sql = f"COPY {connection.ops.quote_name(table)} ({columns}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            write = copy.write_row
            for contact in created:
                row = list(values_of(contact))
                for i in json_at:
                    row[i] = dumps(row[i])
                write(row)
