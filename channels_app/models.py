"""Provider-side records: every verified webhook callback, kept for audit and deduplication."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WebhookEvent(models.Model):
    """One verified provider callback item; (provider, event_id) is the first dedupe gate."""

    class Kind(models.TextChoices):
        STATUS = "status", "Delivery status"
        INBOUND = "inbound", "Inbound message"
        EVENT = "event", "Engagement event"

    provider = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Twilio "MessageSid:MessageStatus" or MessageSid, SendGrid sg_event_id, email Message-ID.
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="webhook_event_provider_event_id_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_id}"
