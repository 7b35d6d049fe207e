"""Broadcasts: one-off campaigns to an audience of segments, frozen at launch into one
recipient row per contact (the row's uniqueness is what makes a second send impossible)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q

from audiences.models import Segment
from messaging.conversion import ConversionSettings
from messaging.fields import SafeJSONField
from messaging.models import Contact, Message


def default_channel_order() -> list[str]:
    return ["whatsapp", "sms", "email"]


class WinnerMetric(models.TextChoices):
    DELIVERED = "delivered", "Delivered rate"
    OPENED = "opened", "Open rate"
    CLICKED = "clicked", "Click rate"
    REPLIED = "replied", "Reply rate"
    CONVERTED = "converted", "Conversion rate"


class Broadcast(ConversionSettings):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"  # launched, first send time not reached
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class Category(models.TextChoices):
        MARKETING = "marketing", "Marketing"
        TRANSACTIONAL = "transactional", "Transactional"

    class SendMode(models.TextChoices):
        NOW = "now", "Now, at launch"
        AT = "at", "At a time"
        LOCAL = "local", "At a time in each recipient's time zone"

    class CapAction(models.TextChoices):
        HOLD = "hold", "Hold until allowed"
        SKIP = "skip", "Skip the send"

    WinnerMetric = WinnerMetric

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.MARKETING)
    topic = models.ForeignKey(
        "messaging.Topic",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Send only to contacts subscribed to this topic (the preference center).",
    )

    # Audience: contacts in any of `segments`, minus those in any of `exclude_segments`.
    segments = models.ManyToManyField(Segment, related_name="+", blank=False)
    exclude_segments = models.ManyToManyField(Segment, related_name="+", blank=True)

    # The message: the template family `template_slug` (one Template per channel), tried in
    # `channel_order` ("preferred" = the contact's preferred channel first).
    template_slug = models.SlugField(max_length=100)
    channel_order = SafeJSONField(
        default=default_channel_order,
        help_text='Channels to try in order, e.g. ["whatsapp", "sms", "email"].',
    )

    send_mode = models.CharField(max_length=8, choices=SendMode.choices, default=SendMode.NOW)
    send_at = models.DateTimeField(null=True, blank=True, help_text="Send mode 'at a time'.")
    local_send_date = models.DateField(null=True, blank=True, help_text="Send mode 'local'.")
    local_send_time = models.TimeField(null=True, blank=True, help_text="Send mode 'local'.")
    throttle_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many messages per minute (empty: no limit)."
    )
    end_at = models.DateTimeField(
        null=True, blank=True, help_text="Recipients not sent by then are skipped."
    )
    quiet_hours_start = models.TimeField(
        default=dt.time(21, 0), help_text="Marketing SMS/WhatsApp wait from this local time…"
    )
    quiet_hours_end = models.TimeField(default=dt.time(8, 0), help_text="…until this one.")
    frequency_cap_action = models.CharField(
        max_length=8, choices=CapAction.choices, default=CapAction.HOLD
    )

    # Experiments (campaigns/experiments.py): 2–5 message variants, each a template family
    # with a weight ([{"template_slug": "promo-a", "weight": 50}, …]; empty: template_slug
    # alone); optionally tested on a share of the audience first, the winner by a metric
    # sent to the rest; and a held-out control group that is never sent anything.
    variants = SafeJSONField(default=list, blank=True)
    variant_test_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Send the variants to this share first (1–50 %)."
    )
    winner_after_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="…then, this many hours later (1–168), the winner."
    )
    winner_metric = models.CharField(
        max_length=16, choices=WinnerMetric.choices, blank=True, help_text="…chosen by this."
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0, help_text="A control group of this share (0–50 %) is never sent anything."
    )
    winner_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner_variant = models.CharField(max_length=100, blank=True, editable=False)
    winner_chosen_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    recipient_count = models.PositiveIntegerField(default=0, help_text="Frozen at launch.")
    # The throttle's token bucket (GCRA): the theoretical time the next message may be
    # claimed. Spent in the same transaction as the claim it pays for (campaigns.services).
    throttle_tat = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("launch_broadcast", "Can launch, pause, resume and cancel broadcasts"),
            # Transactional skips the marketing consent rules, quiet hours and the cap.
            ("send_transactional_broadcast", "Can launch transactional broadcasts"),
        ]
        indexes = [models.Index(fields=["status"], name="broadcast_status")]

    def __str__(self) -> str:
        return self.name


class BroadcastRecipient(models.Model):
    """One contact of a launched broadcast: frozen at launch, then claimed and sent once."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        HELD = "held", "Held (quiet hours / frequency cap)"
        SENT = "sent", "Sent"  # a message was created and queued for delivery
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # the held-out control group: never sent anything (experiments)
        CONTROL = "control", "Control group (never sent)"
        # the rest of a test-then-winner broadcast, released with the winning variant
        AWAITING_WINNER = "awaiting_winner", "Awaiting the winning variant"

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="recipients")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # When this recipient is due (the broadcast's send time, in local mode the contact's own).
    send_after = models.DateTimeField()
    channel = models.CharField(max_length=16, blank=True)
    message = models.OneToOneField(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="broadcast_recipient",
    )
    reason = models.CharField(max_length=255, blank=True)
    # The variant's template family ("" without variants, or awaiting the winner).
    variant = models.CharField(max_length=100, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # A contact never gets the same broadcast twice: overlapping segments, relaunches
            # and crashed workers all meet this constraint.
            models.UniqueConstraint(
                fields=["broadcast", "contact"], name="broadcast_recipient_once"
            ),
        ]
        indexes = [
            # the dispatcher's claim: due, still to send, in order
            models.Index(
                fields=["broadcast", "send_after", "id"],
                condition=Q(state__in=["pending", "held"]),
                name="broadcast_recipient_due",
            ),
            models.Index(fields=["broadcast", "state"], name="broadcast_recipient_state"),
            models.Index(fields=["contact"], name="broadcast_recipient_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.broadcast_id}: {self.state}"
