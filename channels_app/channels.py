"""Channels Touchline speaks, and address normalisation shared by every layer."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import models


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email", "Email"


PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP})


def normalize_phone(value: str) -> str:
    """Return `value` as E.164 (+15551234567), or raise ValidationError.

    Accepts a `whatsapp:` prefix so inbound WhatsApp ids normalise to the same number.
    """
    raw = (value or "").strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:") :]
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            "Enter a phone number in international E.164 form, e.g. +14155552671.",
            code="invalid_phone",
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            "%(value)s is not a valid phone number.", code="invalid_phone", params={"value": value}
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    """Model-field validator: the stored value must already be normalised E.164."""
    if value and normalize_phone(value) != value:
        raise ValidationError("Phone numbers are stored in E.164 form.", code="not_e164")
