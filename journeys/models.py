"""Journeys: trigger events, journeys and their steps, enrollments, survey answers."""

from __future__ import annotations

import datetime as dt

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from messaging.conversion import ConversionSettings
from messaging.fields import SafeJSONField
from messaging.models import Contact, Message


class Event(models.Model):
    """A trigger event from a backend (`order.completed`) or an internal one
    (`message.replied`), stored once per idempotency key."""

    class Source(models.TextChoices):
        API = "api", "API"
        INTERNAL = "internal", "Internal"

    name = models.CharField(max_length=120)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="events")
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="What ingestion did.")
    # Null while accepted but not yet applied (matched to journeys) by a worker.
    # The database default marks rows inserted by code that predates this column (the old
    # web processes of a rolling deploy apply their events in the request) as applied, so the
    # sweeper never applies them twice; event_accept stores NULL explicitly.
    processed_at = models.DateTimeField(null=True, blank=True, db_default=Now())

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(
                fields=["id"],
                name="event_unprocessed",
                condition=models.Q(processed_at__isnull=True),
            ),
            models.Index(fields=["contact", "-occurred_at"], name="event_contact_recent"),
            models.Index(fields=["name", "-occurred_at"], name="event_name_recent"),
            # Segment event conditions: a contact's events of one name in a time window.
            models.Index(fields=["contact", "name", "occurred_at"], name="event_contact_name_at"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class Journey(ConversionSettings):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    class EntryPolicy(models.TextChoices):
        ONCE = "once", "Once per contact, ever"
        ONCE_AT_A_TIME = "once_at_a_time", "Once at a time"
        EVERY_TIME = "every_time", "Every time the event happens"

    class Category(models.TextChoices):
        TRANSACTIONAL = "transactional", "Transactional"
        MARKETING = "marketing", "Marketing"

    class CapAction(models.TextChoices):
        HOLD = "hold", "Hold until allowed"
        SKIP = "skip", "Skip the send"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    trigger_event = models.CharField(max_length=120, db_index=True)
    trigger_filter = SafeJSONField(
        default=dict,
        blank=True,
        help_text='Event properties that must match, e.g. {"country": "FR"}.',
    )
    entry_policy = models.CharField(
        max_length=20, choices=EntryPolicy.choices, default=EntryPolicy.ONCE_AT_A_TIME
    )
    goal_event = models.CharField(
        max_length=120, blank=True, help_text="An event that ends the journey as converted."
    )
    goal_match = SafeJSONField(
        default=dict,
        blank=True,
        help_text='Goal event properties that must match, e.g. {"cart_id": "trigger.cart_id"}.',
    )
    exit_event = models.CharField(
        max_length=120,
        blank=True,
        help_text="An event that ends the journey as exited (a goal match on the same event "
        "converts instead).",
    )
    exit_match = SafeJSONField(
        default=dict,
        blank=True,
        help_text='Exit event properties that must match, e.g. {"cart_id": "trigger.cart_id"}.',
    )
    entry_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Trigger property that keys the entry policy (e.g. cart_id): one enrollment "
        "per contact and key value.",
    )
    category = models.CharField(
        max_length=16, choices=Category.choices, default=Category.TRANSACTIONAL
    )
    topic = models.ForeignKey(
        "messaging.Topic",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Send only to contacts subscribed to this topic (the preference center).",
    )
    quiet_hours_start = models.TimeField(
        default=dt.time(21, 0), help_text="Marketing SMS/WhatsApp wait from this local time…"
    )
    quiet_hours_end = models.TimeField(default=dt.time(8, 0), help_text="…until this one.")
    frequency_cap_action = models.CharField(
        max_length=8, choices=CapAction.choices, default=CapAction.HOLD
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(50)],
        help_text="Hold out this share of contacts (0–50 %) as a control group: they enter, "
        "get nothing and complete at once, so the experiment page can compare them with the "
        "contacts who got the journey. The same contact is always in the same group.",
    )
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "version"], name="journey_slug_version"),
            # Editing a live journey makes a new version; only one version of it runs.
            models.UniqueConstraint(
                fields=["slug"], condition=Q(status="active"), name="journey_one_active_version"
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__lte=50), name="journey_holdout_at_most_half"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Step(models.Model):
    class Kind(models.TextChoices):
        SEND = "send", "Send a message"
        WAIT = "wait", "Wait"
        WAIT_FOR_EVENT = "wait_for_event", "Wait for an event"
        BRANCH = "branch", "Branch"
        SURVEY = "survey", "Survey question"
        SPLIT = "split", "A/B split"
        EXIT = "exit", "Exit"

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0)
    key = models.SlugField(max_length=64, help_text="Names the step for branches and stats.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = SafeJSONField(default=dict, blank=True)
    next_step = models.SlugField(
        max_length=64,
        blank=True,
        help_text='Key of the step after this one (default: the next; "end" completes).',
    )

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "key"], name="step_key_per_journey")
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.key} ({self.kind})"


class Enrollment(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        WAITING = "waiting", "Waiting"
        COMPLETED = "completed", "Completed"
        CONVERTED = "converted", "Converted"
        EXITED = "exited", "Exited"
        FAILED = "failed", "Failed"

    LIVE_STATES = (State.ACTIVE, State.WAITING)

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="enrollments")
    trigger_event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollments"
    )
    entry_policy = models.CharField(max_length=20, choices=Journey.EntryPolicy.choices)
    # The trigger's value of the journey's entry_key ("" when the journey is not keyed).
    entry_key_value = models.CharField(max_length=255, blank=True, default="")
    journey_version = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    current_step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=120, blank=True)
    wait_until = models.DateTimeField(null=True, blank=True)
    wake_event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    context = models.JSONField(default=dict, blank=True)
    exit_reason = models.CharField(max_length=255, blank=True)
    # In the journey's control group (holdout_percent): entered, sent nothing, completed.
    holdout = models.BooleanField(default=False)
    entered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-entered_at"]
        permissions = [
            ("fast_forward_enrollment", "Can skip an enrollment's current wait (time travel)")
        ]
        indexes = [
            # The scheduler's claim: due live enrollments in next_run_at order.
            models.Index(
                fields=["next_run_at"],
                name="enrollment_due",
                condition=Q(state__in=["active", "waiting"]),
            ),
            models.Index(
                fields=["contact", "waiting_for"],
                name="enrollment_waiting",
                condition=Q(state="waiting"),
            ),
            # Experiment results: a journey's enrollments by time of entry.
            models.Index(fields=["journey", "entered_at"], name="enrollment_journey_entered"),
        ]
        constraints = [
            # The guarantee behind entry policies; code checks are only a courtesy.
            models.UniqueConstraint(
                fields=["journey", "contact", "entry_key_value"],
                condition=Q(state__in=["active", "waiting"]) & ~Q(entry_policy="every_time"),
                name="enrollment_one_live_per_contact",
            ),
            models.UniqueConstraint(
                fields=["journey", "contact", "entry_key_value"],
                condition=Q(entry_policy="once"),
                name="enrollment_once_per_contact",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey} / {self.contact} ({self.state})"


class StepVisit(models.Model):
    """An enrollment reaching a step: the funnel is counted from these rows."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="visits")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="visits")
    entered_at = models.DateTimeField()
    outcome = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["step", "entered_at"], name="stepvisit_step")]

    def __str__(self) -> str:
        return f"{self.step.key} @ {self.entered_at:%Y-%m-%d %H:%M}"


class JourneyMessage(models.Model):
    """Which enrollment and step sent a message (messaging knows nothing of journeys)."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="journey_link")
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="messages")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="messages")
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="messages")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.step.key}: {self.message_id}"


class SurveyResponse(models.Model):
    class Status(models.TextChoices):
        ANSWERED = "answered", "Answered"
        UNPARSEABLE = "unparseable", "Answered, not understood"
        TIMED_OUT = "timed_out", "No answer"

    class NpsCategory(models.TextChoices):
        PROMOTER = "promoter", "Promoter (9–10)"
        PASSIVE = "passive", "Passive (7–8)"
        DETRACTOR = "detractor", "Detractor (0–6)"

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="survey_responses")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="survey_responses")
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="survey_responses"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="survey_responses")
    question = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answer = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    raw_answer = models.TextField(blank=True)
    score = models.SmallIntegerField(null=True, blank=True)
    choice = models.CharField(max_length=200, blank=True)
    nps_category = models.CharField(max_length=16, choices=NpsCategory.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    answered_at = models.DateTimeField()

    class Meta:
        ordering = ["-answered_at"]
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="survey_one_per_step")
        ]
        indexes = [models.Index(fields=["journey", "answered_at"], name="survey_journey_time")]

    def __str__(self) -> str:
        return f"{self.contact}: {self.score if self.score is not None else self.choice}"
