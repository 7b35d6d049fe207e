"""Send policies: the one place that decides whether, and when, a message may go out.

Journeys ask `evaluate_send` before they create a message, direct API sends ask it in
`message_create`, and the delivery task asks `check_send` (address and consent) again right
before the provider call. Every refusal carries a reason for the timeline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.utils import timezone

from channels_app.channels import Channel

from .models import Consent, ConsentStatus, Contact, Direction, Message, Topic, TopicSubscription

WHATSAPP_WINDOW = dt.timedelta(hours=24)
DEFAULT_QUIET_HOURS = (dt.time(21, 0), dt.time(8, 0))


class Category:
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    code: str = ""
    hold_until: dt.datetime | None = None
    use_template: bool = False  # WhatsApp outside the 24-hour window: send the content SID

    @property
    def held(self) -> bool:
        return self.hold_until is not None


ALLOW = Decision(True)


def consent_status(*, contact: Contact, channel: str, lock: bool = False) -> str:
    rows = Consent.objects.filter(contact=contact, channel=channel).only("status")
    if lock:
        # Inside the delivery claim: a STOP being committed right now is waited for.
        rows = rows.select_for_update()
    row = rows.first()
    return row.status if row else ConsentStatus.UNKNOWN


def check_consent(*, status: str, channel: str, category: str) -> Decision:
    """Transactional: anything not unsubscribed. Marketing: SMS/WhatsApp need an explicit
    subscription; email may go to subscribed or unknown."""
    if status == ConsentStatus.UNSUBSCRIBED:
        return Decision(False, f"contact unsubscribed from {channel}", "unsubscribed")
    if (
        category == Category.MARKETING
        and channel in (Channel.SMS, Channel.WHATSAPP)
        and status != ConsentStatus.SUBSCRIBED
    ):
        return Decision(False, f"marketing {channel} needs an explicit subscription", "no_consent")
    return ALLOW


def topic_status(*, contact: Contact, topic: Topic, lock: bool = False) -> str:
    """The contact's explicit choice on `topic` (unknown: none, the topic's default applies)."""
    rows = TopicSubscription.objects.filter(contact=contact, topic=topic).only("status")
    if lock:
        rows = rows.select_for_update()
    row = rows.first()
    return row.status if row else ConsentStatus.UNKNOWN


def check_topic(*, status: str, topic: Topic) -> Decision:
    """A send naming a topic reaches only its subscribers: everyone but those who
    unsubscribed for an opt-out topic, only those who subscribed for an opt-in one."""
    if status == ConsentStatus.UNSUBSCRIBED:
        return Decision(False, f"contact unsubscribed from topic {topic.name!r}", "topic")
    if status != ConsentStatus.SUBSCRIBED and not topic.default_subscribed:
        return Decision(
            False, f"opt-in topic {topic.name!r}: the contact has not subscribed", "topic"
        )
    return ALLOW


def check_address(*, contact: Contact, channel: str, address: str) -> Decision:
    if contact.erased_at is not None:
        return Decision(False, "contact's personal data was erased", "erased")
    if not address:
        return Decision(False, f"contact has no {channel} address", "no_address")
    if channel == Channel.EMAIL and contact.email_undeliverable:
        return Decision(False, "email address is undeliverable (hard bounce)", "undeliverable")
    if channel == Channel.SMS and contact.phone_invalid:
        return Decision(False, "phone number was rejected as invalid", "invalid_address")
    if channel == Channel.WHATSAPP and (
        contact.whatsapp_invalid or (not contact.whatsapp and contact.phone_invalid)
    ):
        return Decision(False, "WhatsApp number was rejected as invalid", "invalid_address")
    return ALLOW


def check_send(
    *,
    contact: Contact,
    channel: str,
    category: str,
    address: str,
    lock: bool = False,
    topic: Topic | None = None,
) -> Decision:
    """The final guard before a provider call: a valid address, consent on the channel and,
    for a send that names a topic, the contact's subscription to it."""
    decision = check_address(contact=contact, channel=channel, address=address)
    if not decision.allowed:
        return decision
    decision = check_consent(
        status=consent_status(contact=contact, channel=channel, lock=lock),
        channel=channel,
        category=category,
    )
    if not decision.allowed or topic is None:
        return decision
    return check_topic(status=topic_status(contact=contact, topic=topic, lock=lock), topic=topic)


def in_whatsapp_window(contact: Contact, now: dt.datetime) -> bool:
    last = contact.last_inbound_whatsapp_at
    return last is not None and now - last < WHATSAPP_WINDOW


def check_whatsapp_window(
    *,
    contact: Contact,
    now: dt.datetime,
    has_body: bool,
    has_content_sid: bool,
    has_template: bool = True,
) -> Decision:
    """Freeform inside 24 h of the contact's last WhatsApp message; else an approved template.
    `has_template`: the message comes from a template (False: a free-form body as given)."""
    if has_body and in_whatsapp_window(contact, now):
        return ALLOW
    if has_content_sid:
        return Decision(True, use_template=True)
    if not has_template:
        return Decision(
            False,
            "outside the WhatsApp 24-hour window: free-form messages are not allowed there; "
            "send an approved template (one with a content SID)",
            "whatsapp_window",
        )
    return Decision(
        False,
        "outside the WhatsApp 24-hour window and the template has no approved content SID",
        "whatsapp_window",
    )


def _contact_zone(contact: Contact) -> ZoneInfo:
    try:
        return ZoneInfo(contact.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_end(
    *, contact: Contact, now: dt.datetime, quiet: tuple[dt.time, dt.time]
) -> dt.datetime | None:
    """When the contact's local quiet hours end, or None if `now` is not inside them.

    Computed on the local calendar, so a DST change overnight moves the UTC instant, not the
    local hour the message goes out at.
    """
    start, end = quiet
    if start == end:
        return None
    zone = _contact_zone(contact)
    local = now.astimezone(zone)
    t = local.time()
    inside = (t >= start or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    opens = dt.datetime.combine(day, end, tzinfo=zone)
    # A local time skipped by a spring-forward gap resolves to the first valid instant.
    return opens.astimezone(dt.UTC)


def frequency_cap_release(*, contact: Contact, now: dt.datetime) -> dt.datetime | None:
    """None while under the marketing cap; else when the oldest counted message ages out.

    Inside a transaction on PostgreSQL, the contact's cap is locked until it ends (an
    advisory lock): two journeys sending to one contact at once (two workers) count one after
    the other, so the second sees the first's message and the cap is never exceeded."""
    limit = settings.FREQUENCY_CAP_MESSAGES
    if not limit:
        return None
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext('touchline:frequency-cap'), %s)",
                [contact.pk % 2_147_483_647],  # an int4 key; a shared key only serialises more
            )
    window = dt.timedelta(hours=settings.FREQUENCY_CAP_WINDOW_HOURS)
    recent = list(
        Message.objects.filter(
            contact=contact,
            direction=Direction.OUTBOUND,
            category=Category.MARKETING,
            # strictly inside the window: at `oldest + window` the oldest no longer counts
            created_at__gt=now - window,
        )
        .exclude(status__in=("skipped", "failed"))
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return None
    return recent[-1] + window


def evaluate_send(
    *,
    contact: Contact,
    channel: str,
    category: str,
    address: str,
    now: dt.datetime | None = None,
    has_body: bool = True,
    has_content_sid: bool = False,
    has_template: bool = True,
    quiet_hours: tuple[dt.time, dt.time] | None = DEFAULT_QUIET_HOURS,
    cap_action: str = "hold",
    topic: Topic | None = None,
) -> Decision:
    """Everything a new send must pass, in order: address, consent (channel, then `topic`
    when the send names one), WhatsApp window, and for marketing quiet hours (held, not
    dropped) and the frequency cap (held or skipped)."""
    now = now or timezone.now()
    decision = check_send(
        contact=contact, channel=channel, category=category, address=address, topic=topic
    )
    if not decision.allowed:
        return decision
    use_template = False
    if channel == Channel.WHATSAPP:
        window = check_whatsapp_window(
            contact=contact,
            now=now,
            has_body=has_body,
            has_content_sid=has_content_sid,
            has_template=has_template,
        )
        if not window.allowed:
            return window
        use_template = window.use_template
    if category == Category.MARKETING:
        if channel in (Channel.SMS, Channel.WHATSAPP) and quiet_hours:
            opens = quiet_hours_end(contact=contact, now=now, quiet=quiet_hours)
            if opens is not None:
                return Decision(
                    False,
                    f"quiet hours in {contact.timezone or 'UTC'}",
                    "quiet_hours",
                    hold_until=opens,
                )
        release = frequency_cap_release(contact=contact, now=now)
        if release is not None:
            reason = (
                f"frequency cap: {settings.FREQUENCY_CAP_MESSAGES} marketing messages per "
                f"{settings.FREQUENCY_CAP_WINDOW_HOURS} h"
            )
            if cap_action == "skip":
                return Decision(False, reason, "frequency_cap")
            return Decision(False, reason, "frequency_cap", hold_until=release)
    return Decision(True, use_template=use_template)
