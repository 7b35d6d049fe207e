"""Outbound webhooks: who subscribes to what, and one delivery row plus one attempt row per try
(saleor's shape), so every send can be audited and retried without guesswork."""

from __future__ import annotations

import base64
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models

from messaging.fields import SafeJSONField

from . import egress, encryption

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
WEBHOOK_ID_PREFIX = "msg_"
# A delivery log keeps only a short printable excerpt of what a receiver answered: enough to
# debug a receiver, too little to read an internal service through it.
RESPONSE_EXCERPT_LIMIT = egress.EXCERPT_CHARS


class EventType(models.TextChoices):
    """What a subscription can ask for. `webhook.test` is only ever sent by the test ping."""

    MESSAGE_SENT = "message.sent", "A message was handed to the provider"
    MESSAGE_DELIVERED = "message.delivered", "The provider reported a message delivered"
    MESSAGE_FAILED = "message.failed", "A message failed or was undelivered"
    MESSAGE_REPLIED = "message.replied", "A customer replied (any inbound message)"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed", "A contact unsubscribed from a channel"
    CONTACT_SUBSCRIBED = "contact.subscribed", "A contact subscribed to a channel"
    SURVEY_ANSWERED = "survey.answered", "A survey question got an answer"
    JOURNEY_CONVERTED = "journey.converted", "An enrollment reached its journey's goal"


TEST_EVENT_TYPE = "webhook.test"


def generate_secret() -> str:
    """A Standard Webhooks symmetric secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def generate_webhook_id() -> str:
    # Letters, digits, `_` and `-` only: the id is part of the signed `{id}.{ts}.{body}`
    # string, so it must never contain a `.`.
    return WEBHOOK_ID_PREFIX + secrets.token_urlsafe(18)


def new_encrypted_secret() -> str:
    """A fresh signing secret, already encrypted (the model never holds the plain one)."""
    return encryption.encrypt(generate_secret())


validate_webhook_url = URLValidator(
    schemes=["http", "https"], message="Enter a valid http:// or https:// URL."
)
# Both, in this order: a well-formed http(s) URL, whose host is not (and does not resolve
# to) an internal address. A name that does not resolve yet passes; every delivery checks
# again.
WEBHOOK_URL_VALIDATORS = [validate_webhook_url, egress.validate_url_destination]


def validate_event_types(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Give a non-empty list of event types.", code="invalid")
    unknown = sorted({str(v) for v in value} - set(EventType.values))
    if unknown:
        raise ValidationError(
            "Unknown event type(s): %(unknown)s.",
            code="invalid_choice",
            params={"unknown": ", ".join(unknown)},
        )


class WebhookSubscription(models.Model):
    """An endpoint a backend system registered, and the event types it wants."""

    url = models.CharField(max_length=2000, validators=WEBHOOK_URL_VALIDATORS)
    description = models.CharField(max_length=255, blank=True)
    event_types = SafeJSONField(default=list, validators=[validate_event_types])
    # The signing secret, Fernet-encrypted (outbound.encryption); `.secret` decrypts it. The
    # plain secret is shown once, when the subscription is made.
    secret_encrypted = models.TextField(default=new_encrypted_secret, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Failed deliveries in a row; reset by any successful delivery."
    )
    created_by_key = models.ForeignKey(
        "messaging.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Publishing an event reads the active subscriptions; keep that scan tiny.
            models.Index(
                fields=["id"], name="webhook_sub_active", condition=models.Q(is_active=True)
            )
        ]

    def __str__(self) -> str:
        return self.url if self.is_active else f"{self.url} (disabled)"

    @property
    def secret(self) -> str:
        """The plain `whsec_…` secret; raises encryption.InvalidToken if no key opens it."""
        return encryption.decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_encrypted = encryption.encrypt(value)


class WebhookDelivery(models.Model):
    """One event for one subscription. Retries reuse the row (and its webhook-id)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=64)
    webhook_id = models.CharField(max_length=40, unique=True, default=generate_webhook_id)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The dispatcher's scan: only live rows are in this index.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["subscription", "-created_at"], name="webhook_delivery_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: what came back and how long it took."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_body = models.CharField(
        max_length=RESPONSE_EXCERPT_LIMIT,
        blank=True,
        help_text="A printable excerpt of the response (control characters removed); empty "
        "when no HTTP response came back.",
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["attempted_at", "id"]
        constraints = [
            # No HTTP answer (refused address, DNS, connection or TLS error): no body either.
            models.CheckConstraint(
                condition=models.Q(status_code__isnull=False) | models.Q(response_body=""),
                name="webhook_attempt_body_needs_response",
            )
        ]

    def __str__(self) -> str:
        return f"{self.status_code or self.error[:40]} in {self.duration_ms} ms"
