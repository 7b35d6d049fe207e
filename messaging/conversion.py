"""What a journey or a broadcast counts as a conversion: the event names, the window after a
message in which such an event is attributed to it, the event property holding the revenue,
and the attribution model. An abstract model both use (insights reads these fields)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .fields import SafeJSONField
from .input_rules import text_problem

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


# --- Validation (the admin forms and the APIs of journeys and broadcasts share it) ---------

MAX_CONVERSION_EVENTS = 10
# The event API's own rule for names (journeys.api.EventInput), so any name it accepts fits.
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
# A top-level property name: letters, digits and underscores ("total", "order_total").
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def conversion_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors of the conversion settings among `values` (only the keys present are
    checked): event names, at most MAX_CONVERSION_EVENTS, the window in 1..2160 hours, a
    simple revenue property name and a known model."""
    errors: dict[str, list[str]] = {}
    if "conversion_events" in values:
        events = values["conversion_events"]
        if events is None:
            events = []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            errors["conversion_events"] = ["A list of event names."]
        elif len(events) > MAX_CONVERSION_EVENTS:
            errors["conversion_events"] = [f"At most {MAX_CONVERSION_EVENTS} events."]
        else:
            bad = [e for e in events if not EVENT_NAME.match(e)]
            if bad:
                errors["conversion_events"] = [
                    f"Not an event name: {bad[0][:60]!r} (letters, digits and . _ : - only)."
                ]
    window = values.get("conversion_window_hours")
    if "conversion_window_hours" in values and (
        isinstance(window, bool)
        or not isinstance(window, int)
        or not 1 <= window <= MAX_CONVERSION_WINDOW_HOURS
    ):
        errors["conversion_window_hours"] = [f"Between 1 and {MAX_CONVERSION_WINDOW_HOURS} hours."]
    prop = values.get("revenue_property")
    if prop and (not isinstance(prop, str) or not PROPERTY_NAME.match(prop)):
        errors["revenue_property"] = [
            "A top-level event property name, e.g. total (letters, digits, underscores)."
        ]
    model = values.get("attribution_model")
    if "attribution_model" in values and model not in AttributionModel.values:
        errors["attribution_model"] = [f"One of: {', '.join(AttributionModel.values)}."]
    return errors


def conversion_events_clean(value: Any) -> list[str]:
    """Event names in their first order, duplicates dropped, from a list or from text with one
    name per line or comma-separated (the admin's field)."""
    if isinstance(value, str):
        value = [part.strip() for part in re.split(r"[\s,]+", value) if part.strip()]
    if not isinstance(value, list):
        return value
    return list(dict.fromkeys(v.strip() if isinstance(v, str) else v for v in value))


class ConversionEventsFormField(forms.CharField):
    """The admin's field for `conversion_events`: names separated by commas or new lines."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Conversion events")
        kwargs.setdefault(
            "help_text",
            "Events that count as a conversion after a message, separated by commas, e.g. "
            f"order.completed (at most {MAX_CONVERSION_EVENTS}).",
        )
        kwargs.pop("max_length", None)
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        super().__init__(max_length=2000, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        problem = text_problem(text)
        if problem:
            raise ValidationError(problem, code="invalid")
        events = conversion_events_clean(text)
        errors = conversion_errors({"conversion_events": events})
        if errors:
            raise ValidationError(errors["conversion_events"], code="invalid")
        return events


def conversion_form_clean(form: forms.ModelForm) -> None:
    """Add the conversion settings' errors to an admin form (model fields already cleaned)."""
    data = form.cleaned_data
    present = {n: data[n] for n in CONVERSION_FIELDS if n in data and n in form.fields}
    for name, messages in conversion_errors(present).items():
        if name not in form.errors:
            for message in messages:
                form.add_error(name, message)


CONVERSION_FIELDS = (
    "conversion_events",
    "conversion_window_hours",
    "revenue_property",
    "attribution_model",
)


def conversion_input_fields() -> dict[str, Any]:
    """The API's writable conversion settings (optional; the model's defaults otherwise)."""
    from rest_framework import serializers

    return {
        "conversion_events": serializers.ListField(
            child=serializers.RegexField(EVENT_NAME.pattern, max_length=120),
            max_length=MAX_CONVERSION_EVENTS,
            required=False,
            help_text='Events that count as a conversion, e.g. ["order.completed"].',
        ),
        "conversion_window_hours": serializers.IntegerField(
            min_value=1, max_value=MAX_CONVERSION_WINDOW_HOURS, required=False
        ),
        "revenue_property": serializers.RegexField(
            PROPERTY_NAME.pattern,
            allow_blank=True,
            max_length=64,
            required=False,
            help_text='The conversion event property holding its revenue, e.g. "total".',
        ),
        "attribution_model": serializers.ChoiceField(
            choices=AttributionModel.choices, required=False
        ),
    }
