"""Contact imports: an uploaded CSV, how its columns map onto contacts, and the run's
progress (a checkpoint per batch, so a crashed run continues where it stopped)."""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models

from messaging.fields import SafeJSONField


def import_storage() -> FileSystemStorage:
    """Uploaded import files live under TOUCHLINE_DATA_DIR/imports (shared by web and
    workers: put TOUCHLINE_DATA_DIR on a shared volume when they run on different hosts)."""
    return FileSystemStorage(location=settings.DATA_DIR / "imports")


class ContactImport(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        VALIDATING = "validating", "Validating"
        VALIDATED = "validated", "Validated"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    # Which status may follow which (services.import_transition is the only writer).
    TRANSITIONS = {
        Status.UPLOADED: {Status.VALIDATING},
        Status.VALIDATING: {Status.VALIDATED, Status.FAILED},
        Status.VALIDATED: {Status.VALIDATING, Status.QUEUED},
        Status.QUEUED: {Status.RUNNING, Status.FAILED},
        Status.RUNNING: {Status.COMPLETED, Status.FAILED, Status.QUEUED},
        Status.FAILED: set(),
        Status.COMPLETED: set(),
    }

    file = models.FileField(storage=import_storage, upload_to="%Y/%m/", max_length=300)
    original_name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    columns = SafeJSONField(default=list, blank=True, help_text="The file's header row.")
    mapping = SafeJSONField(
        default=dict,
        blank=True,
        help_text='Column → target: "email", "attributes.plan:number", "consent.sms", '
        '"ignore" (docs/IMPORT.md).',
    )
    consent_source = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where the consent in this file was given, e.g. “checkout opt-in, 2026-10”. "
        "Required when a column maps to consent; written to the consent ledger.",
    )
    validation = SafeJSONField(
        default=dict, blank=True, help_text="The validation pass: counts and first errors."
    )
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(
        default=0, help_text="Data rows done (the checkpoint: a re-run continues after it)."
    )
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    consent_changes = models.PositiveIntegerField(default=0)
    failure = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_via_key = models.CharField(
        max_length=64, blank=True, help_text="The API key's prefix, for API uploads."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "updated_at"], name="contact_import_status")]
        # Exporting a segment's contacts hands out personal data in bulk: its own permission,
        # not implied by viewing segments (declared here: audiences/models.py is shared).
        permissions = [("export_contacts", "Can export a segment's contacts as CSV")]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.original_name or 'CSV'})"

    @property
    def progress(self) -> float:
        """Fraction of data rows done, 0..1."""
        if not self.total_rows:
            return 1.0 if self.status == self.Status.COMPLETED else 0.0
        return min(1.0, self.processed_rows / self.total_rows)


class ContactImportError(models.Model):
    """One row a run refused (written in the same transaction as the batch's checkpoint, so a
    resumed run neither loses nor repeats them). The error report CSV is read from here."""

    contact_import = models.ForeignKey(
        ContactImport, on_delete=models.CASCADE, related_name="row_errors"
    )
    row = models.PositiveIntegerField(help_text="Line number in the file (the header is 1).")
    column = models.CharField(max_length=255, blank=True)
    message = models.CharField(max_length=500)

    class Meta:
        ordering = ["row", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact_import", "row", "column"], name="contact_import_error_once"
            )
        ]

    def __str__(self) -> str:
        return f"row {self.row} {self.column}: {self.message}"
