"""Insights: what the touchpoints led to. A `Conversion` is one conversion event attributed
to the one message that earned it (last click, else last delivered), with the journey, step
or broadcast, template and channel copied so reports group it without joins."""

from __future__ import annotations

from django.db import models

from campaigns.models import Broadcast
from journeys.models import Event, Journey, Step
from messaging.conversion import AttributionModel
from messaging.models import Contact, Message, Template


class Conversion(models.Model):
    class Touch(models.TextChoices):
        CLICKED = "clicked", "Clicked"
        DELIVERED = "delivered", "Delivered"

    # One conversion per event, ever: the unique constraint is the "counted once" guarantee.
    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="conversion")
    # db_index=False: each of these leads one of the indexes in Meta, which serves its lookups
    # (and the deletes that cascade or set null) as well; a second index would only cost
    # every insert on the ingest path (docs/PERFORMANCE.md, attribution).
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_index=False)
    message = models.ForeignKey(
        Message, null=True, on_delete=models.SET_NULL, related_name="conversions", db_index=False
    )
    journey = models.ForeignKey(
        Journey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    broadcast = models.ForeignKey(
        Broadcast,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    template = models.ForeignKey(
        Template,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    channel = models.CharField(max_length=16)
    model = models.CharField(max_length=16, choices=AttributionModel.choices)
    touch = models.CharField(max_length=16, choices=Touch.choices)
    event_name = models.CharField(max_length=120)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    occurred_at = models.DateTimeField(help_text="When the conversion event happened.")
    touched_at = models.DateTimeField(help_text="When the credited click or delivery happened.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        # Reports (insights/reports.py) read conversions among everything else.
        permissions = [("view_reports", "Can view reports and download them as CSV")]
        # Who reads them: message (reports' EXISTS and join, journey_experiments' join);
        # journey + occurred_at (journey_map); the others serve the deletes of a contact,
        # broadcast or template. Nothing filters by channel (reports group conversions they
        # found by message), so there is no channel index: each index costs every insert.
        indexes = [
            models.Index(fields=["journey", "occurred_at"], name="conversion_journey"),
            models.Index(fields=["broadcast", "occurred_at"], name="conversion_broadcast"),
            models.Index(fields=["template", "occurred_at"], name="conversion_template"),
            models.Index(fields=["message"], name="conversion_message"),
            models.Index(fields=["contact", "occurred_at"], name="conversion_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} → message {self.message_id}"
