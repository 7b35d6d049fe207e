"""Request and response shapes shared by the messaging API (and the events API above it)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from channels_app.channels import Channel, normalize_phone

from .models import ConsentStatus, Contact, validate_timezone


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know: a typo must not be silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


class PhoneField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not value:
            return value
        try:
            return normalize_phone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages, code="invalid_phone") from exc


class TimezoneField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            validate_timezone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages, code="invalid_timezone") from exc
        return value


class ContactFieldsInput(StrictSerializer):
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    phone = PhoneField(required=False, allow_blank=True, max_length=32)
    whatsapp = PhoneField(required=False, allow_blank=True, max_length=32)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    locale = serializers.CharField(required=False, allow_blank=True, max_length=35)
    timezone = TimezoneField(required=False, max_length=64)
    preferred_channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, allow_blank=True
    )
    attributes = serializers.DictField(
        required=False, help_text="Merged key by key; a null value removes the key."
    )
    consent = serializers.DictField(
        child=serializers.ChoiceField(choices=ConsentStatus.choices),
        required=False,
        help_text='Per channel, e.g. {"sms": "subscribed"}; recorded with source "api".',
    )

    def validate_consent(self, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(Channel.values))
        if unknown:
            raise serializers.ValidationError(f"Unknown channel(s): {', '.join(unknown)}.")
        return value


class ContactRefInput(ContactFieldsInput):
    """A contact named by external_id (upserted) or by inline addresses."""

    external_id = serializers.CharField(required=False, max_length=255)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("external_id") and not any(
            attrs.get(k) for k in ("email", "phone", "whatsapp")
        ):
            raise serializers.ValidationError(
                "Give external_id, or an address (email, phone or whatsapp)."
            )
        return attrs


class ContactOutput(serializers.ModelSerializer):
    consent = serializers.SerializerMethodField()
    # Plain strings: an absent address is "" (not a malformed email), E.164 when set.
    email = serializers.CharField(read_only=True)
    phone = serializers.CharField(read_only=True)
    whatsapp = serializers.CharField(read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "external_id",
            "email",
            "phone",
            "whatsapp",
            "first_name",
            "last_name",
            "locale",
            "timezone",
            "preferred_channel",
            "attributes",
            "consent",
            "created_via",
            "created_at",
            "updated_at",
        ]

    def get_consent(self, contact: Contact) -> dict[str, str]:
        current = {c.channel: c.status for c in contact.consents.all()}
        return {channel: current.get(channel, ConsentStatus.UNKNOWN) for channel in Channel.values}
