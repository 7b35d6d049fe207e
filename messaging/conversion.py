"""What a journey or a broadcast counts as a conversion: the event names, the window after a
message in which such an event is attributed to it, the event property holding the revenue,
and the attribution model. An abstract model both use (insights reads these fields)."""

from __future__ import annotations

from django.db import models

from .fields import SafeJSONField

MAX_CONVERSION_WINDOW_HOURS = 24 * 90


class AttributionModel(models.TextChoices):
    LAST_CLICK = "last_click", "Last click (else last delivered)"
    LAST_TOUCH = "last_touch", "Last touch (last delivered)"


class ConversionSettings(models.Model):
    conversion_events = SafeJSONField(
        default=list,
        blank=True,
        help_text='Events that count as a conversion, e.g. ["order.completed"].',
    )
    conversion_window_hours = models.PositiveIntegerField(
        default=72, help_text="A conversion counts within this many hours after the message."
    )
    revenue_property = models.CharField(
        max_length=64,
        blank=True,
        help_text='The conversion event property holding its revenue, e.g. "total" (optional).',
    )
    attribution_model = models.CharField(
        max_length=16, choices=AttributionModel.choices, default=AttributionModel.LAST_CLICK
    )

    class Meta:
        abstract = True
