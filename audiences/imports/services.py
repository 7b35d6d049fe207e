"""Contact import services: upload (the header checked at once), the validation pass (a dry
run over the whole file), the run (batches with a checkpoint each) and the error report.
The only writers of ContactImport."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from messaging.input_rules import JsonInputError, check_json

from ..import_models import ContactImport, ContactImportError
from .batch import BatchResult, process_batch
from .mapping import Target, effective_mapping
from .reader import FileError, batches, count_rows, read_header

Status = ContactImport.Status
FIRST_ERRORS = 100  # errors kept in the validation summary (the rest are counted)
MAX_ATTEMPTS = 3  # a batch that met a concurrent insert of the same external id is redone


class ImportInvalid(Exception):
    """Field-level errors: {column or field: [messages]} ("" for the file as a whole)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class ImportStateError(Exception):
    """The import is not in a status that allows this step."""


def _targets(columns: list[str], mapping: dict[str, Any]) -> list[tuple[int, str, Target]]:
    targets, errors = effective_mapping(columns, mapping)
    if errors:
        raise ImportInvalid(errors)
    return [
        (index, column, targets[column])
        for index, column in enumerate(columns)
        if targets[column].kind != "ignore"
    ]


def import_check(*, columns: list[str], mapping: Any, consent_source: str) -> None:
    """ImportInvalid unless the mapping fits the header (and consent columns name their
    source)."""
    targets, errors = effective_mapping(columns, mapping)
    if any(t.kind == "consent" for t in targets.values()) and not consent_source.strip():
        errors.setdefault("consent_source", []).append(
            "Consent columns need a source: where and when these people opted in "
            "(e.g. “imported from checkout opt-in, 2026-10”)."
        )
    if errors:
        raise ImportInvalid(errors)


def import_create(
    *,
    file: UploadedFile,
    mapping: dict[str, Any] | None = None,
    consent_source: str = "",
    user: Any = None,
    api_key_prefix: str = "",
) -> ContactImport:
    """Store an uploaded CSV (streamed to TOUCHLINE_DATA_DIR/imports) after checking its
    header against the mapping; counts its rows for the progress bar."""
    mapping = mapping or {}
    problem = _mapping_problem(mapping)
    if problem:
        raise ImportInvalid(problem)
    try:
        file.seek(0)
        columns = read_header(file)
        file.seek(0)
        total = count_rows(file)
        file.seek(0)
    except FileError as exc:
        raise ImportInvalid({"file": [str(exc)]}) from None
    import_check(columns=columns, mapping=mapping, consent_source=consent_source)
    contact_import = ContactImport(
        original_name=(getattr(file, "name", "") or "")[:255],
        columns=columns,
        mapping=mapping,
        consent_source=consent_source.strip(),
        total_rows=total,
        uploaded_by=user if getattr(user, "pk", None) else None,
        uploaded_via_key=api_key_prefix,
    )
    contact_import.file.save(f"import-{timezone.now():%Y%m%d-%H%M%S}.csv", file, save=False)
    try:
        contact_import.save()
    except BaseException:
        # Nothing half-written: no stored file (personal data) without its import.
        contact_import.file.storage.delete(contact_import.file.name)
        raise
    return contact_import


def _mapping_problem(mapping: Any) -> dict[str, list[str]] | None:
    """NUL bytes, lone surrogates or deep nesting in the mapping (stored as JSONB), as
    errors at the column (or at the mapping for a bad column name)."""
    try:
        check_json(mapping, max_depth=settings.API_MAX_JSON_DEPTH)
    except JsonInputError as exc:
        return {exc.path[0] if exc.path else "mapping": [exc.message]}
    return None


def import_change_mapping(
    *, contact_import: ContactImport, mapping: dict[str, Any], consent_source: str
) -> ContactImport:
    """A new mapping: the earlier validation no longer holds, so it must be validated again."""
    problem = _mapping_problem(mapping)
    if problem:
        raise ImportInvalid(problem)
    with transaction.atomic():
        locked = ContactImport.objects.select_for_update().get(pk=contact_import.pk)
        if locked.status not in (Status.UPLOADED, Status.VALIDATED):
            raise ImportStateError(f"The mapping is fixed once the import is {locked.status}.")
        import_check(columns=locked.columns, mapping=mapping, consent_source=consent_source)
        locked.mapping, locked.consent_source = mapping, consent_source.strip()
        locked.status, locked.validation = Status.UPLOADED, {}
        locked.save()
    return locked


def import_transition(*, contact_import: ContactImport, to: str, **fields: Any) -> ContactImport:
    """Move to status `to` if the transition is allowed (ContactImport.TRANSITIONS), with a
    conditional UPDATE so two requests cannot both start it; ImportStateError otherwise."""
    allowed = [s for s, nexts in ContactImport.TRANSITIONS.items() if to in nexts]
    done = ContactImport.objects.filter(pk=contact_import.pk, status__in=allowed).update(
        status=to, updated_at=timezone.now(), **fields
    )
    contact_import.refresh_from_db()
    if not done:
        raise ImportStateError(f"An import that is {contact_import.status} cannot become {to}.")
    return contact_import


def import_validate(*, contact_import: ContactImport, batch_size: int | None = None) -> dict:
    """The validation pass (status `validating`): a dry run over the whole file, storing
    counts of rows that would be created / updated / left unchanged and the first errors.
    Rows repeated in different batches are counted as created once per batch."""
    size = batch_size or settings.IMPORT_BATCH_SIZE
    total = BatchResult()
    rows = 0
    try:
        targets = _targets(contact_import.columns, contact_import.mapping)
        with contact_import.file.open("rb") as binary:
            for rows_batch in batches(binary, skip=0, size=size):
                result = process_batch(
                    rows_batch, targets=targets, width=len(contact_import.columns), dry_run=True
                )
                rows += len(rows_batch)
                _add(total, result)
                # Alive: the stall sweeper leaves a long validation alone.
                ContactImport.objects.filter(pk=contact_import.pk, status=Status.VALIDATING).update(
                    updated_at=timezone.now()
                )
                if len(total.errors) < FIRST_ERRORS:
                    total.errors.extend(result.errors[: FIRST_ERRORS - len(total.errors)])
    except (FileError, ImportInvalid) as exc:
        summary = {"file_errors": _messages(exc)}
        import_transition(contact_import=contact_import, to=Status.FAILED, failure=str(exc))
        return summary
    summary = {
        "rows": rows,
        "would_create": total.created,
        "would_update": total.updated,
        "unchanged": total.unchanged,
        "error_rows": total.error_rows,
        "consent_changes": total.consent_changes,
        "errors": [
            {"line": line, "column": col, "message": msg} for line, col, msg in total.errors
        ],
        "validated_at": timezone.now().isoformat(),
    }
    import_transition(
        contact_import=contact_import, to=Status.VALIDATED, validation=summary, total_rows=rows
    )
    return summary


def _messages(exc: Exception) -> list[str]:
    if isinstance(exc, ImportInvalid):
        return [f"{k or 'file'}: {m}" for k, msgs in exc.errors.items() for m in msgs]
    return [str(exc)]


def _add(total: BatchResult, result: BatchResult) -> None:
    for name in ("created", "updated", "unchanged", "error_rows", "consent_changes"):
        setattr(total, name, getattr(total, name) + getattr(result, name))


def import_run(
    *,
    contact_import: ContactImport,
    batch_size: int | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> bool:
    """Run (or continue) an import from its checkpoint, one transaction per batch; returns
    True when rows remain because `keep_going` said stop (the caller queues the rest).
    Re-running a finished file changes nothing: rows equal to the stored contact are left
    alone, consents already given write no ledger row."""
    size = batch_size or settings.IMPORT_BATCH_SIZE
    if contact_import.status == Status.QUEUED:
        try:
            import_transition(
                contact_import=contact_import, to=Status.RUNNING, started_at=timezone.now()
            )
        except ImportStateError:
            return False  # another worker took it
    elif contact_import.status != Status.RUNNING:
        return False
    offset = contact_import.processed_rows
    try:
        targets = _targets(contact_import.columns, contact_import.mapping)
        with contact_import.file.open("rb") as binary:
            for rows in batches(binary, skip=offset, size=size):
                if not _run_batch(contact_import, rows, targets, offset):
                    return False  # someone else moved the checkpoint: theirs to finish
                offset += len(rows)
                if not keep_going():
                    return True
    except (FileError, ImportInvalid) as exc:
        import_transition(
            contact_import=contact_import,
            to=Status.FAILED,
            failure="; ".join(_messages(exc))[:5000],
            finished_at=timezone.now(),
        )
        return False
    import_transition(
        contact_import=contact_import, to=Status.COMPLETED, finished_at=timezone.now()
    )
    return False


def _run_batch(
    contact_import: ContactImport, rows: list, targets: list[tuple[int, str, Target]], offset: int
) -> bool:
    for attempt in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                locked = (
                    ContactImport.objects.select_for_update()
                    .only("status", "processed_rows")
                    .get(pk=contact_import.pk)
                )
                if locked.status != Status.RUNNING or locked.processed_rows != offset:
                    return False
                result = process_batch(
                    rows,
                    targets=targets,
                    width=len(contact_import.columns),
                    dry_run=False,
                    consent_note=contact_import.consent_source,
                    actor_id=contact_import.uploaded_by_id,
                )
                ContactImportError.objects.bulk_create(
                    [
                        ContactImportError(
                            contact_import_id=contact_import.pk,
                            row=line,
                            column=column[:255],
                            message=message,
                        )
                        for line, column, message in result.errors
                    ],
                    ignore_conflicts=True,
                )
                ContactImport.objects.filter(pk=contact_import.pk).update(
                    processed_rows=offset + len(rows),
                    created_count=F("created_count") + result.created,
                    updated_count=F("updated_count") + result.updated,
                    unchanged_count=F("unchanged_count") + result.unchanged,
                    error_count=F("error_count") + result.error_rows,
                    consent_changes=F("consent_changes") + result.consent_changes,
                    updated_at=timezone.now(),
                )
            return True
        except IntegrityError:
            # A contact with one of these external ids was created meanwhile (an event, the
            # API): match again.
            if attempt == MAX_ATTEMPTS - 1:
                raise
    return False


def import_error_rows(*, contact_import: ContactImport) -> Iterator[tuple[int, str, str]]:
    """The error report: (line, column, message), in file order, streamed from the table."""
    yield from (
        ContactImportError.objects.filter(contact_import=contact_import)
        .order_by("row", "id")
        .values_list("row", "column", "message")
        .iterator(chunk_size=2000)
    )


def import_delete(*, contact_import: ContactImport) -> None:
    """Delete an import, its error rows and its stored file (the file holds personal data;
    contacts already imported stay)."""
    name = contact_import.file.name
    storage = contact_import.file.storage
    contact_import.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))


STALLABLE = (Status.VALIDATING, Status.QUEUED, Status.RUNNING)


def imports_stalled(*, older_than: dt.timedelta) -> list[int]:
    """Imports whose task was lost: validating, queued or running, with no change (the
    validation pass and the run touch `updated_at` each batch) for `older_than`."""
    cutoff = timezone.now() - older_than
    return list(
        ContactImport.objects.filter(status__in=STALLABLE, updated_at__lt=cutoff)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:100]
    )


def import_take_stalled(*, import_id: int, older_than: dt.timedelta) -> str | None:
    """Claim a stalled import for its task to be queued again: a running one becomes
    queued (it continues after its last committed batch); a validating or queued one stays
    as it is. `updated_at` is moved, so the next sweep waits for it to stall again. Returns
    the status to queue a task for, or None if it is no longer stalled (a conditional
    UPDATE: two sweepers cannot both take it)."""
    now = timezone.now()
    cutoff = now - older_than
    stalled = ContactImport.objects.filter(pk=import_id, updated_at__lt=cutoff)
    for status in STALLABLE:
        new = Status.QUEUED if status == Status.RUNNING else status
        if stalled.filter(status=status).update(status=new, updated_at=now):
            return new
    return None
