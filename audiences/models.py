"""Segments: saved audience definitions, their current members and the entered/left log."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from messaging.fields import SafeJSONField
from messaging.models import Contact


def empty_definition() -> dict:
    return {"all": []}


class Segment(models.Model):
    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic (computed from the definition)"
        STATIC = "static", "Static (a fixed list)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    definition = SafeJSONField(
        default=empty_definition,
        blank=True,
        help_text="Conditions (docs/SEGMENTS.md); static segments have none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_computed_at = models.DateTimeField(null=True, blank=True)
    member_count = models.PositiveIntegerField(
        default=0, help_text="Members at the last recompute (static: current)."
    )

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["kind", "last_computed_at"], name="segment_due")]

    def __str__(self) -> str:
        return self.name


class SegmentMembership(models.Model):
    """Who is in a segment now: kept by segment_recompute (dynamic) or staff (static)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "contact"], name="segment_member_once")
        ]
        # (segment, contact) is the unique index; "which segments is this contact in" needs
        # the other order.
        indexes = [models.Index(fields=["contact"], name="segment_member_contact")]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.segment_id}"


class SegmentMembershipChange(models.Model):
    """Append-only history: every entry into and exit from a segment, with its time."""

    class Change(models.TextChoices):
        ENTERED = "entered", "Entered"
        LEFT = "left", "Left"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="changes")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    change = models.CharField(max_length=8, choices=Change.choices)
    at = models.DateTimeField()
    # When the change was offered to listeners (journeys' "enters/leaves segment" triggers):
    # null until then. The change's id makes the event's idempotency key, so offering it
    # again after a crash creates nothing twice (audiences/live.py).
    emitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["segment", "-at"], name="segment_change_recent"),
            models.Index(fields=["contact", "-at"], name="segment_change_contact"),
            models.Index(
                fields=["id"], name="segment_change_unemitted", condition=Q(emitted_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.change} {self.segment_id} at {self.at:%Y-%m-%d %H:%M}"


class SegmentDirtyContact(models.Model):
    """A contact that changed (fields, consent, an event, a message) since its dynamic
    segments were last evaluated: appended on commit, drained in batches by the live task.
    No unique key and no foreign key, so marking is one plain INSERT that never waits on a
    lock; the same contact may appear several times (the drain takes it once)."""

    contact_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"contact {self.contact_id} changed"


class SegmentSize(models.Model):
    """A segment's member count per hour (the last one measured in that hour)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    at = models.DateTimeField(help_text="The start of the hour.")
    member_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["segment", "at"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "at"], name="segment_size_per_hour")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id}: {self.member_count} at {self.at:%Y-%m-%d %H:00}"


from .import_models import ContactImport, ContactImportError  # noqa: E402,F401
