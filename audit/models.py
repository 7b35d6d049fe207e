"""The staff audit log: who did what to which object, when, with a field diff.

Append-only: the model refuses updates and deletes, and on PostgreSQL a trigger (migration
0002) refuses UPDATE and DELETE on the table whoever sends them. Entries hold no foreign
keys (actor and object are copied as type, id and label), so deleting a user, an API key or
the object itself never cascades into the log.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    """An attempt to change or delete an audit entry."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs: object) -> int:
        raise AppendOnlyError("Audit entries are append-only and cannot be changed.")

    def delete(self):
        raise AppendOnlyError("Audit entries are append-only and cannot be deleted.")


class AuditEntry(models.Model):
    class ActorKind(models.TextChoices):
        USER = "user", "Staff user"
        API_KEY = "api_key", "API key"
        SYSTEM = "system", "System"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(
        default=dict, blank=True, help_text="Field → [before, after] of what changed."
    )
    context = models.JSONField(
        default=dict, blank=True, help_text="Request (method, path, IP) and details."
    )

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        # Nobody can be granted add/change/delete: the only permissions are to read and export.
        default_permissions = ("view",)
        permissions = [("export_auditentry", "Can export the audit log as CSV")]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-at"], name="audit_object"),
            models.Index(fields=["actor_kind", "actor_id", "-at"], name="audit_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_label}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit entries are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit entries are append-only and cannot be deleted.")
