"""A broadcast's dry run: what launching it now would do, per channel, without writing.

The rules are messaging/policies.py's, in the order `evaluate_send` applies them: no template
on the channel, address (missing / invalid / undeliverable), consent for the category
(unsubscribed, or marketing SMS/WhatsApp without a subscription, as the `reachable` segment
condition says), the broadcast's topic when it names one (unsubscribed, or not subscribed to an
opt-in topic), the WhatsApp 24-hour window (else the template's content SID), then for
marketing quiet hours (held) and the frequency cap (held, or skipped with
`frequency_cap_action = skip`). A refusal falls back to the next channel in the broadcast's
order; a hold keeps the contact on that channel until it ends.

Everything per contact is one SQL statement: the address/consent/window outcome of every
channel is a CASE expression, and contacts are GROUPed BY those outcomes, time zone and
preferred channel. Python then walks the groups (bounded by the number of outcome
combinations and time zones, never by the audience) to apply the channel order, quiet hours
(computed per time zone with policies.quiet_hours_end itself) and the end-of-send window.
Five queries (segments, exclusions, templates, time zones, the grouped one), whatever the
audience size.

Time: each contact is evaluated at their own send time: the launch (mode "now"), `send_at`,
or in local mode `local_send_date` + `local_send_time` in the contact's time zone (never
earlier than now). The frequency cap counts marketing messages already sent in the window
before that time; messages sent between now and then cannot be known yet.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_app.channels import Channel
from messaging import policies
from messaging.models import Consent, ConsentStatus, Contact, Direction, Message, Template
from messaging.selectors import topic_receives

from .models import Broadcast
from .services import audience_queryset, local_instant, split
from .services.freeze import local_late_grace

OK = "ok"
PREFERRED = "preferred"

# Why a contact is not sent on a channel: the policies' codes, plus two of the dry run's.
REASONS = {
    "no_template": "no template for this channel in the template family",
    "no_address": "no address on this channel",
    "invalid_address": "the address was rejected as invalid",
    "undeliverable": "the email address hard-bounced",
    "unsubscribed": "unsubscribed from this channel",
    "topic": "not subscribed to the broadcast's topic (unsubscribed, or an opt-in topic)",
    "no_consent": "marketing SMS/WhatsApp needs an explicit subscription",
    "whatsapp_window": "outside the WhatsApp 24-hour window and no approved template",
    "quiet_hours": "quiet hours in the contact's time zone at their send time",
    "frequency_cap": "frequency cap reached",
    "end_window": "held past the end-of-send window",
    "no_channel": "no channel in the order",
    "local_time_passed": "the local send time has already passed in the contact's time zone",
}


def broadcast_audience(*, broadcast: Broadcast, now: dt.datetime) -> QuerySet[Contact]:
    """Contacts in any of the broadcast's segments and in none of its exclusion segments,
    evaluated now: the query the launch freezes (campaigns.services.audience_queryset)."""
    return audience_queryset(
        segments=list(broadcast.segments.all()),
        excluded=list(broadcast.exclude_segments.all()),
        now=now,
    )


def channel_order_for(order: list[str], preferred: str) -> list[str]:
    """The channels to try for one contact: `preferred` stands for their preferred channel
    (dropped when they have none); duplicates after the first are dropped."""
    result: list[str] = []
    for channel in order:
        if channel == PREFERRED:
            channel = preferred
        if channel in Channel.values and channel not in result:
            result.append(channel)
    return result


def send_time_for(*, broadcast: Broadcast, zone: str, now: dt.datetime) -> tuple[dt.datetime, bool]:
    """When a contact in `zone` is due (never before `now`), and whether the launch would
    skip them: in local mode, a send time already passed by more than the grace."""
    if broadcast.send_mode == Broadcast.SendMode.AT and broadcast.send_at:
        return max(broadcast.send_at, now), False
    if (
        broadcast.send_mode == Broadcast.SendMode.LOCAL
        and broadcast.local_send_date
        and broadcast.local_send_time
    ):
        at = local_instant(broadcast.local_send_date, broadcast.local_send_time, zone)
        return max(at, now), at < now - local_late_grace()
    return now, False


# --- SQL: one outcome code per channel --------------------------------------------------


def _before(at: Any, delta: dt.timedelta) -> ExpressionWrapper:
    """`at - delta` in SQL (`at` is a time or a CASE over time zones)."""
    return ExpressionWrapper(
        at - Value(delta, output_field=DurationField()), output_field=DateTimeField()
    )


def _consent(channel: str):
    return Coalesce(
        Subquery(
            Consent.objects.filter(contact=OuterRef("pk"), channel=channel).values("status")[:1]
        ),
        Value(ConsentStatus.UNKNOWN),
    )


def _consent_whens(channel: str, category: str) -> list[When]:
    """policies.check_consent as CASE branches (on the annotation `consent_<channel>`)."""
    status = f"consent_{channel}"
    whens = [When(**{status: ConsentStatus.UNSUBSCRIBED}, then=Value("unsubscribed"))]
    if category == policies.Category.MARKETING and channel != Channel.EMAIL:
        whens.append(When(~Q(**{status: ConsentStatus.SUBSCRIBED}), then=Value("no_consent")))
    return whens


def _outcome(
    channel: str, category: str, template: Template | None, at: Any, topic: bool = False
) -> Case | Value:
    """policies.check_send (address, consent, the topic when `topic`: on the annotation
    `topic_ok`) and for WhatsApp check_whatsapp_window."""
    if template is None:
        return Value("no_template")
    if channel == Channel.EMAIL:
        whens = [
            When(email="", then=Value("no_address")),
            When(email_undeliverable=True, then=Value("undeliverable")),
        ]
    elif channel == Channel.SMS:
        whens = [
            When(phone="", then=Value("no_address")),
            When(phone_invalid=True, then=Value("invalid_address")),
        ]
    else:
        whens = [
            When(whatsapp="", phone="", then=Value("no_address")),
            When(
                Q(whatsapp_invalid=True) | (Q(whatsapp="") & Q(phone_invalid=True)),
                then=Value("invalid_address"),
            ),
        ]
    whens += _consent_whens(channel, category)
    if topic:
        whens.append(When(topic_ok=False, then=Value("topic")))
    if channel == Channel.WHATSAPP and not template.content_sid:
        has_body = bool(template.body or template.html_body)
        in_window = Q(last_inbound_whatsapp_at__gt=_before(at, policies.WHATSAPP_WINDOW))
        whens.append(
            When(~in_window if has_body else Q(pk__isnull=False), then=Value("whatsapp_window"))
        )
    return Case(*whens, default=Value(OK), output_field=CharField())


def _capped(at: Any) -> Exists | Value:
    """policies.frequency_cap_release is not None, at the contact's send time `at`."""
    limit = settings.FREQUENCY_CAP_MESSAGES
    if not limit:
        return Value(False)
    window = dt.timedelta(hours=settings.FREQUENCY_CAP_WINDOW_HOURS)
    recent = (
        Message.objects.filter(
            contact=OuterRef("pk"),
            direction=Direction.OUTBOUND,
            category=policies.Category.MARKETING,
            created_at__gt=_before(at, window),
        )
        .exclude(status__in=("skipped", "failed"))
        .order_by()
        .values("pk")
    )
    # "at least `limit` of them": the limit-th newest exists
    return Exists(recent.order_by("-created_at")[limit - 1 : limit])


# --- The result -------------------------------------------------------------------------


@dataclass
class ChannelRow:
    channel: str
    reachable: int = 0  # in the audience, could take this channel (address, consent, window)
    sent: int = 0
    held: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # fell through to the next channel

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "reachable": self.reachable,
            "sent": self.sent,
            "held": sum(self.held.values()),
            "held_reasons": dict(self.held),
            "skipped": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped),
        }


def experiment_split(*, broadcast: Broadcast, audience: QuerySet[Contact]) -> dict | None:
    """How the launch would split the audience now: the control group, each variant, and
    those awaiting the winner (one grouped query with the freeze's own hash; None without an
    experiment). The channel figures above are for the whole audience."""
    if not split.has_experiment(broadcast):
        return None
    p = split.plan(broadcast)
    members_sql, members_params = audience.values("id").query.sql_with_params()
    group_sql, group_params = split.group_case(p, "m.bucket")
    hashed = split.bucket_sql("m0.id", broadcast.pk)
    sql = (
        f"SELECT {group_sql} AS grp, COUNT(*) FROM "  # noqa: S608 (Django's SQL and ints)
        f"(SELECT m0.id, {hashed} AS bucket FROM ({members_sql}) AS m0) AS m GROUP BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*group_params, *members_params])
        found = dict(cursor.fetchall())
    return {
        "control": found.get(split.CONTROL, 0),
        "awaiting_winner": found.get(split.AWAITING, 0),
        "variants": {key: found.get(key, 0) for key in split.variant_keys(broadcast)},
    }


def broadcast_dry_run(*, broadcast: Broadcast, now: dt.datetime | None = None) -> dict[str, Any]:
    """How many of the audience would be sent, held or skipped, per channel and why."""
    now = now or timezone.now()
    category = broadcast.category
    order = [c for c in broadcast.channel_order if c in (*Channel.values, PREFERRED)]
    channels = [c for c in Channel.values if c in order or PREFERRED in order]
    templates = {t.channel: t for t in Template.objects.filter(slug=broadcast.template_slug)}
    audience = broadcast_audience(broadcast=broadcast, now=now)

    zones = list(audience.order_by().values_list("timezone", flat=True).distinct())
    schedule = {z: send_time_for(broadcast=broadcast, zone=z, now=now) for z in zones}
    send_times = {z: at for z, (at, _) in schedule.items()}
    if len(set(send_times.values())) <= 1:
        at: Any = Value(next(iter(send_times.values()), now), output_field=DateTimeField())
    else:
        at = Case(
            *(When(timezone=z, then=Value(t)) for z, t in send_times.items()),
            output_field=DateTimeField(),
        )
    # the contact's send time as a column, compared in SQL below
    annotations: dict[str, Any] = {"send_time": at}
    for channel in channels:
        annotations[f"consent_{channel}"] = _consent(channel)
    if broadcast.topic is not None:
        annotations["topic_ok"] = topic_receives(broadcast.topic)
    for channel in channels:
        annotations[f"c_{channel}"] = _outcome(
            channel,
            category,
            templates.get(channel),
            F("send_time"),
            topic=broadcast.topic is not None,
        )
    if category == policies.Category.MARKETING:
        annotations["capped"] = _capped(OuterRef("send_time"))
    else:
        annotations["capped"] = Value(False)
    keys = ["timezone", "preferred_channel", "capped", *(f"c_{c}" for c in channels)]
    groups = list(
        audience.order_by()
        .annotate(**annotations)
        .values(*keys)
        .annotate(n=Count("pk"))
        .values(*keys, "n")
    )

    rows = {c: ChannelRow(c) for c in Channel.values}
    final_skipped: Counter = Counter()
    held_total = sent_total = 0
    quiet = (broadcast.quiet_hours_start, broadcast.quiet_hours_end)
    total = 0
    for group in groups:
        n = group["n"]
        total += n
        for channel in channels:
            if group[f"c_{channel}"] == OK:
                rows[channel].reachable += n
        zone = group["timezone"]
        send_at, too_late = schedule.get(zone, (now, False))
        if too_late:
            final_skipped["local_time_passed"] += n
            continue
        last_reason = "no_channel"
        for channel in channel_order_for(order, group["preferred_channel"]):
            code = group[f"c_{channel}"]
            if code != OK:
                rows[channel].skipped[code] += n
                last_reason = code
                continue
            hold_until = None
            if category == policies.Category.MARKETING:
                if channel in (Channel.SMS, Channel.WHATSAPP):
                    hold_until = policies.quiet_hours_end(
                        contact=Contact(timezone=zone), now=send_at, quiet=quiet
                    )
                if hold_until is not None:
                    code = "quiet_hours"
                elif group["capped"]:
                    if broadcast.frequency_cap_action == Broadcast.CapAction.SKIP:
                        rows[channel].skipped["frequency_cap"] += n
                        last_reason = "frequency_cap"
                        continue
                    code = "frequency_cap"
            if code == OK:
                rows[channel].sent += n
                sent_total += n
            elif hold_until is not None and broadcast.end_at and hold_until > broadcast.end_at:
                rows[channel].skipped["end_window"] += n
                final_skipped["end_window"] += n
            else:
                rows[channel].held[code] += n
                held_total += n
            break
        else:
            final_skipped[last_reason] += n
    return {
        "broadcast": broadcast.slug,
        "evaluated_at": now.isoformat(),
        "audience": total,
        "sent": sent_total,
        "held": held_total,
        "skipped": sum(final_skipped.values()),
        "skipped_reasons": dict(final_skipped),
        "channel_order": order,
        "channels": [rows[c].as_dict() for c in Channel.values if c in channels],
        "reasons": REASONS,
        "split": experiment_split(broadcast=broadcast, audience=audience),
    }
