"""Building import files and running imports in tests."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.import_models import ContactImport
from audiences.imports import import_create, import_run, import_transition, import_validate


def csv_file(text: str, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def uploaded(text: str, *, mapping=None, consent_source: str = "", user=None) -> ContactImport:
    return import_create(
        file=csv_file(text), mapping=mapping or {}, consent_source=consent_source, user=user
    )


def validated(text: str, **kwargs) -> ContactImport:
    contact_import = uploaded(text, **kwargs)
    import_transition(contact_import=contact_import, to=ContactImport.Status.VALIDATING)
    import_validate(contact_import=contact_import)
    contact_import.refresh_from_db()
    return contact_import


def imported(text: str, *, batch_size: int | None = None, **kwargs) -> ContactImport:
    """Upload, validate and run to the end, in this process."""
    contact_import = validated(text, **kwargs)
    import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
    import_run(contact_import=contact_import, batch_size=batch_size)
    contact_import.refresh_from_db()
    return contact_import
