"""Customer-side state: contacts, consent, templates, messages and the touchpoint log."""

from __future__ import annotations

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Coalesce
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager

from channels_app.channels import Channel, validate_e164

from .fields import SafeJSONField
from .status import MessageStatus


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            "%(value)s is not an IANA time zone (e.g. Europe/Paris).",
            code="invalid_timezone",
            params={"value": value},
        )


class Direction(models.TextChoices):
    OUTBOUND = "outbound", "Outbound"
    INBOUND = "inbound", "Inbound"
    INTERNAL = "internal", "Internal"


class Contact(models.Model):
    class CreatedVia(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        INBOUND = "inbound", "Inbound message"
        EVENT = "event", "Event"
        IMPORT = "import", "CSV import"

    external_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    email = models.EmailField(max_length=254, blank=True, db_index=True)
    phone = models.CharField(max_length=20, blank=True, db_index=True, validators=[validate_e164])
    whatsapp = models.CharField(
        max_length=20, blank=True, db_index=True, validators=[validate_e164]
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=35, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    preferred_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    attributes = SafeJSONField(default=dict, blank=True)
    created_via = models.CharField(
        max_length=16, choices=CreatedVia.choices, default=CreatedVia.API
    )
    email_undeliverable = models.BooleanField(
        default=False, help_text="Set by a hard bounce; email is not sent until cleared."
    )
    phone_invalid = models.BooleanField(
        default=False, help_text="Set when the provider rejects the phone number (SMS)."
    )
    whatsapp_invalid = models.BooleanField(
        default=False, help_text="Set when the provider rejects the WhatsApp number."
    )
    last_inbound_whatsapp_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(
        null=True, blank=True, help_text="Personal data erased (GDPR); never messaged again."
    )
    # Test sends from the admin reach only test contacts (messaging/staff_sends.py); flagging
    # one needs `manage_test_contacts`, so nobody can make a customer a test recipient.
    is_test = models.BooleanField(
        default=False,
        help_text="A staff test recipient: template tests may be sent to it, never to others.",
    )
    test_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="test_contacts",
        help_text="The staff member whose “Send test to me” reaches this test contact.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("manage_test_contacts", "Can flag contacts as test contacts and set their owner")
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(test_owner__isnull=True) | models.Q(is_test=True),
                name="contact_test_owner_only_on_test_contacts",
            )
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return (
            name or self.external_id or self.email or self.phone or self.whatsapp or f"#{self.pk}"
        )

    def address_for(self, channel: str) -> str:
        return {
            Channel.SMS: self.phone,
            Channel.WHATSAPP: self.whatsapp or self.phone,
            Channel.EMAIL: self.email,
        }.get(channel, "")


class ConsentStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    UNKNOWN = "unknown", "Unknown"


class ConsentSource(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "Admin"
    KEYWORD = "keyword", "Keyword (STOP/START)"
    PROVIDER = "provider", "Provider report"
    IMPORT = "import", "Import"
    EVENT = "event", "Event"
    ONE_CLICK = "one_click", "One-click unsubscribe (List-Unsubscribe)"
    PREFERENCE_CENTER = "preference_center", "Preference center (the contact's own choice)"


class Consent(models.Model):
    """The current consent of one contact on one channel (history in ConsentChange)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(
        max_length=16, choices=ConsentStatus.choices, default=ConsentStatus.UNKNOWN
    )
    source = models.CharField(max_length=32, choices=ConsentSource.choices, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "channel"], name="consent_one_per_channel")
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.status}"


class Topic(models.Model):
    """A subscription topic staff define (newsletter, product news…): marketing journeys and
    broadcasts name one, and contacts choose theirs on the preference center page.

    `default_subscribed` makes it an opt-out topic (everyone receives it until they
    unsubscribe); off, it is opt-in (only contacts who subscribed receive it)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(
        blank=True, help_text="Shown to customers on the preference center page."
    )
    default_subscribed = models.BooleanField(
        default=True,
        help_text="On: an opt-out topic (contacts receive it until they unsubscribe). "
        "Off: an opt-in topic (only contacts who subscribed receive it).",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive topics are hidden from the preference center."
    )
    position = models.PositiveIntegerField(default=0, help_text="Order on the preference page.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TopicSubscription(models.Model):
    """A contact's explicit choice on one topic (no row: the topic's default applies)."""

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="topic_subscriptions"
    )
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    status = models.CharField(
        max_length=16,
        choices=[c for c in ConsentStatus.choices if c[0] != ConsentStatus.UNKNOWN],
    )
    source = models.CharField(max_length=32, choices=ConsentSource.choices, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "topic"], name="topicsub_one_per_topic")
        ]
        # Segment conditions and dry runs ask "who is (un)subscribed from topic X".
        indexes = [models.Index(fields=["topic", "status"], name="topicsub_topic_status")]

    def __str__(self) -> str:
        return f"{self.topic_id}: {self.status}"


class ConsentChange(models.Model):
    """Append-only history: every consent change, with where it came from. A row with a
    `topic` is a change of topic subscription (its `channel` is blank)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    topic = models.ForeignKey(
        Topic, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    previous_status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    note = models.CharField(max_length=255, blank=True)
    message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["contact", "-changed_at"], name="consent_hist_contact")]

    def __str__(self) -> str:
        what = self.channel or f"topic {self.topic_id}"
        return f"{what}: {self.previous_status} → {self.status} ({self.source})"


class Template(models.Model):
    """A message template for one channel; text fields use Liquid (python-liquid)."""

    slug = models.SlugField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    subject = models.CharField(max_length=500, blank=True, help_text="Email only.")
    body = models.TextField(blank=True, help_text="Text body (SMS, WhatsApp, email text part).")
    html_body = models.TextField(blank=True, help_text="Email only: the HTML part.")
    content_sid = models.CharField(
        max_length=64,
        blank=True,
        help_text="WhatsApp only: an approved Twilio Content template (HX…).",
    )
    content_variables = SafeJSONField(
        default=dict,
        blank=True,
        help_text='WhatsApp only: variable → Liquid, e.g. {"1": "{{ contact.first_name }}"}',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "channel"], name="template_slug_channel")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_channel_display()})"

    def save(self, *args, **kwargs) -> None:
        # "A template that fails to parse cannot be saved" is an invariant no database
        # constraint can express, so every save path checks it, not only forms.
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from .rendering import template_errors

        errors = template_errors(self)
        if errors:
            raise ValidationError(errors)


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    direction = models.CharField(max_length=10, choices=Direction.choices[:2])
    channel = models.CharField(max_length=16, choices=Channel.choices)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="messages")
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    to_address = models.CharField(max_length=320)
    from_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    content_sid = models.CharField(max_length=64, blank=True)
    content_variables = models.JSONField(default=dict, blank=True)
    media = models.JSONField(default=list, blank=True, help_text="Media URLs or attachment info.")
    status = models.CharField(max_length=16, choices=MessageStatus.choices, db_index=True)
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True, db_index=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    delivery_tries = models.PositiveIntegerField(
        default=0, help_text="Delivery task runs that found it queued (crash-loop guard)."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=32, blank=True, help_text="api, admin, journey, …")
    category = models.CharField(max_length=16, default="transactional")
    topic = models.ForeignKey(
        "Topic", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    in_reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    skipped_at = models.DateTimeField(null=True, blank=True)
    unknown_at = models.DateTimeField(
        null=True, blank=True, help_text="When its outcome became unknown (a worker died mid-call)."
    )
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("send_message", "Can send messages to customers from the admin (reply, message)"),
            ("send_test_message", "Can send template tests to test contacts"),
        ]
        indexes = [
            models.Index(fields=["contact", "-created_at"], name="message_contact_recent"),
            # The sweeper's two scans stay small: only live rows are in these indexes.
            models.Index(
                fields=["next_attempt_at"],
                name="message_queued_due",
                condition=models.Q(status="queued"),
            ),
            models.Index(
                fields=["sending_at"],
                name="message_sending_since",
                condition=models.Q(status="sending"),
            ),
            # Reconciliation claims `unknown` messages whose next lookup is due.
            models.Index(
                fields=["next_attempt_at"],
                name="message_unknown_due",
                condition=models.Q(status="unknown"),
            ),
            # Segment engagement windows (audiences/engagement.py): "received / delivered in
            # the last N days" and "replied in the last N days" read only the rows in the
            # window; partial, so each holds only the messages it can match.
            models.Index(
                Coalesce("sent_at", "delivered_at", "read_at"),
                name="message_received_time",
                condition=models.Q(direction="outbound", status__in=["sent", "delivered", "read"]),
            ),
            # Reports (insights/reports.py) select outbound messages by when they were made.
            models.Index(
                fields=["created_at"],
                name="message_outbound_made",
                condition=models.Q(direction="outbound"),
            ),
            models.Index(
                fields=["received_at"],
                name="message_reply_time",
                condition=models.Q(direction="inbound", in_reply_to__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.direction} to {self.to_address} ({self.status})"


class TouchpointKind:
    """Known touchpoint kinds. Other apps (journeys) add their own strings."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    SKIPPED = "skipped"
    HELD = "held"
    RETRYING = "retrying"
    UNKNOWN = "unknown"
    RECONCILED = "reconciled"
    DEFERRED = "deferred"
    OPENED = "opened"
    CLICKED = "clicked"
    CLICKED_BOT = "clicked_bot"  # a link preview or mail scanner: recorded, not a click
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    REPLIED = "replied"
    CONSENT_CHANGED = "consent_changed"
    EVENT = "event"
    CONVERTED = "converted"  # a conversion event attributed to this message (insights)


class Touchpoint(models.Model):
    """One line of a customer's timeline. Append-only: rows are never updated or deleted."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="touchpoints")
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    kind = models.CharField(max_length=40)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="touchpoints"
    )
    occurred_at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200, unique=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["contact", "-occurred_at", "-id"], name="touchpoint_timeline"),
            models.Index(fields=["kind", "-occurred_at"], name="touchpoint_kind_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.channel} @ {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Touchpoints are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Touchpoints are append-only and cannot be deleted.")


class Conversation(models.Model):
    """A contact's thread in the staff inbox: one row per contact, reopened by new replies.

    While a staff member has it open, the contact's marketing journeys are paused.
    """

    class Status(models.TextChoices):
        NEEDS_REPLY = "needs_reply", "Needs a reply"
        OPEN = "open", "Open (staff in conversation)"
        RESOLVED = "resolved", "Resolved"

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="conversation")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEEDS_REPLY)
    last_inbound = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["-last_inbound_at"],
                name="conversation_inbox",
                condition=~models.Q(status="resolved"),
            )
        ]
        permissions = [("use_inbox", "Can read and answer conversations in the inbox")]

    def __str__(self) -> str:
        return f"{self.contact} ({self.get_status_display()})"


class ApiKey(AbstractAPIKey):
    """A backend system's key, stored hashed; `scopes` limits what it may call. The API reads
    the row on every request (`messaging.api_auth`): a write takes effect at once."""

    scopes = SafeJSONField(default=list, blank=True)

    objects = APIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class TrackedLink(models.Model):
    """One http(s) link of one outbound message, rewritten to `PUBLIC_BASE_URL/l/<token>` at
    send time (`messaging.links`); the token is the row id plus a truncated HMAC."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tracked_links")
    url = models.TextField()
    position = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "position"], name="trackedlink_position")
        ]

    def __str__(self) -> str:
        return self.url
