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


# What may surround the digits of a number written for people: "+1 (415) 555-2671".
_PHONE_PUNCTUATION = frozenset("+ ()-./")
_ENTER_E164 = "Enter a phone number in international E.164 form, e.g. +14155552671."


def normalize_phone(value: str) -> str:
    """Return `value` as E.164 (+15551234567), or raise ValidationError.

    Accepts a `whatsapp:` prefix so inbound WhatsApp ids normalise to the same number. Refuses
    anything but digits and punctuation: `phonenumbers.parse` silently drops trailing garbage
    ("+14155552671x") and reads extensions ("… ext. 12"), and neither can receive a message.
    """
    raw = (value or "").strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:") :].strip()
    if not raw.startswith("+") or any(
        not ("0" <= char <= "9") and char not in _PHONE_PUNCTUATION for char in raw
    ):
        raise ValidationError(
            f"{_ENTER_E164} Only digits, spaces and ( ) - . / may follow the +: no extensions "
            "or other characters.",
            code="invalid_phone",
        )
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(_ENTER_E164, code="invalid_phone") from exc
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(parsed) or (
        phonenumbers.normalize_digits_only(raw) != formatted[1:]
    ):
        # The digits check refuses numbers phonenumbers read only part of.
        raise ValidationError(
            "%(value)s is not a valid phone number.", code="invalid_phone", params={"value": value}
        )
    return formatted


def validate_e164(value: str) -> None:
    """Model-field validator: the stored value must already be normalised E.164."""
    if value and normalize_phone(value) != value:
        raise ValidationError("Phone numbers are stored in E.164 form.", code="not_e164")
