"""Sending claimed recipients: each on the first channel the send policies allow, through
the same path as a journey's send step (messaging.policies.evaluate_send, then
messaging.services.message_create with an idempotency key per broadcast, contact and
channel). Every outcome is a touchpoint on the contact's timeline."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from channels_app.channels import Channel
from messaging import policies
from messaging.models import Contact, Direction, Message, Template, Touchpoint
from messaging.services import MessageRequestError, message_create, touchpoints_write
from messaging.status import MessageStatus

from ..models import Broadcast, BroadcastRecipient
from ..status import SENDABLE
from .sql import touchpoint_data

logger = logging.getLogger(__name__)

R = BroadcastRecipient.State
S = Broadcast.Status
UPDATED_FIELDS = ["state", "send_after", "channel", "message", "reason", "attempts", "updated_at"]
# A recipient claimed this many times without an outcome (its send kept killing the worker
# before the batch committed) is failed instead of being claimed forever.
MAX_CLAIMS = 5


def idempotency_key(broadcast_id: int, contact_id: int, channel: str) -> str:
    """The message's key: a second attempt (a re-claim after a crash, a duplicate task) finds
    the message the first one created instead of making another."""
    return f"broadcast:{broadcast_id}:{contact_id}:{channel}"


def channel_order(broadcast: Broadcast, contact: Contact) -> list[str]:
    """The broadcast's channel order for this contact ("preferred" → their preferred
    channel; unknown or repeated entries dropped)."""
    order: list[str] = []
    for channel in broadcast.channel_order or []:
        if channel == "preferred":
            channel = contact.preferred_channel or ""
        if channel in Channel.values and channel not in order:
            order.append(channel)
    return order


@dataclass
class Batch:
    """What one batch writes together: the recipients' rows and their touchpoints."""

    broadcast: Broadcast
    # template family slug → channel → template (the broadcast's family and its variants')
    templates: dict[str, dict[str, Template]]
    existing: dict[str, Message]
    now: dt.datetime
    touchpoints: list[Touchpoint] = field(default_factory=list)

    def touch(
        self,
        recipient: BroadcastRecipient,
        outcome: str,
        *,
        channel: str = "",
        message: Message | None = None,
        dedupe: str = "",
        **data,
    ) -> None:
        b = self.broadcast
        self.touchpoints.append(
            Touchpoint(
                contact_id=recipient.contact_id,
                kind=f"broadcast_{outcome}",
                direction=Direction.INTERNAL,
                channel=channel,
                message=message,
                occurred_at=self.now,
                data=touchpoint_data(
                    b,
                    **({"channel": channel} if channel else {}),
                    **({"variant": recipient.variant} if recipient.variant else {}),
                    **data,
                ),
                dedupe_key=f"bc:{b.pk}:{recipient.contact_id}:{dedupe or outcome}",
            )
        )


def _record_message(batch: Batch, recipient: BroadcastRecipient, message: Message) -> None:
    recipient.message = message
    recipient.channel = message.channel
    if message.status in (MessageStatus.FAILED, MessageStatus.SKIPPED):
        recipient.state = R.FAILED if message.status == MessageStatus.FAILED else R.SKIPPED
        recipient.reason = (message.error_message or message.status)[:255]
        batch.touch(
            recipient,
            recipient.state,
            channel=message.channel,
            message=message,
            reason=recipient.reason,
        )
        return
    recipient.state, recipient.reason = R.SENT, ""
    batch.touch(recipient, "sent", channel=message.channel, message=message)


def recipient_send(batch: Batch, recipient: BroadcastRecipient) -> None:
    """Decide and record one recipient's outcome (sets its fields; the caller saves)."""
    broadcast, contact, now = batch.broadcast, recipient.contact, batch.now
    recipient.updated_at = now
    order = channel_order(broadcast, contact)
    # A message an earlier attempt created (and committed) is this recipient's send: never
    # a second one, whatever the policies say now (its own message counts to the cap), on
    # whichever channel it went (the preferred one may have changed since).
    for channel in Channel.values:
        found = batch.existing.get(idempotency_key(broadcast.pk, contact.pk, channel))
        if found is not None:
            _record_message(batch, recipient, found)
            return
    if recipient.attempts > MAX_CLAIMS:
        recipient.state, recipient.channel = R.FAILED, ""
        recipient.reason = (
            f"its send stopped the worker {recipient.attempts - 1} times before it was recorded"
        )
        batch.touch(recipient, "failed", reason=recipient.reason)
        return
    skipped: list[str] = []
    failed: list[str] = []
    family = recipient.variant or broadcast.template_slug
    for channel in order:
        template = batch.templates.get(family, {}).get(channel)
        if template is None:
            skipped.append(f"{channel}: no {channel} template {family!r}")
            continue
        decision = policies.evaluate_send(
            contact=contact,
            channel=channel,
            category=broadcast.category,
            address=contact.address_for(channel),
            now=now,
            has_body=bool(template.body or template.html_body),
            has_content_sid=bool(template.content_sid),
            quiet_hours=(broadcast.quiet_hours_start, broadcast.quiet_hours_end),
            cap_action=broadcast.frequency_cap_action,
            topic=broadcast.topic,
        )
        if decision.held:
            # Claimed again when the hold ends, and decided afresh then; `attempts` counts
            # claims since the last decision.
            recipient.state, recipient.channel, recipient.attempts = R.HELD, channel, 0
            recipient.send_after = decision.hold_until
            recipient.reason = decision.reason[:255]
            until = decision.hold_until.isoformat()
            batch.touch(
                recipient,
                "held",
                channel=channel,
                dedupe=f"held:{channel}:{until}",
                until=until,
                reason=decision.reason,
            )
            return
        if not decision.allowed:
            skipped.append(f"{channel}: {decision.reason}")
            continue
        try:
            message, _ = message_create(
                contact=contact,
                channel=channel,
                template=template,
                context={"broadcast": {"slug": broadcast.slug, "name": broadcast.name}},
                idempotency_key=idempotency_key(broadcast.pk, contact.pk, channel),
                source="broadcast",
                category=broadcast.category,
                topic=broadcast.topic,
                decision=decision,
                metadata={
                    "broadcast": broadcast.slug,
                    "broadcast_id": broadcast.pk,
                    **({"variant": recipient.variant} if recipient.variant else {}),
                },
                # A template broken by this contact's data (or over a limit) becomes a failed
                # message with the reason on the timeline.
                fail_on_render_error=True,
            )
        except MessageRequestError as exc:
            failed.append(f"{channel}: {exc.errors}")
            continue
        _record_message(batch, recipient, message)
        return
    recipient.channel = ""
    recipient.state = R.FAILED if failed else R.SKIPPED
    nothing = "no channel to try: the contact has no preferred channel and the order names no other"
    recipient.reason = "; ".join(failed or skipped or [nothing])[:255]
    batch.touch(recipient, recipient.state, reason=recipient.reason)


def _load(recipient_ids: list[int]) -> list[BroadcastRecipient]:
    return list(
        BroadcastRecipient.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("contact", "broadcast__topic")
        .filter(pk__in=recipient_ids, state__in=SENDABLE)
        .order_by("pk")
    )


def recipients_take(recipient_ids: list[int]) -> None:
    """Count an attempt for each row this task is about to send, committed before the send:
    a worker that dies mid-send leaves the count behind (MAX_CLAIMS fails a row that keeps
    killing it), while a row only claimed again as its lease ran out in a queue backlog
    counts nothing. Rows another task is sending (locked) are left alone."""
    with transaction.atomic():
        taken = list(
            BroadcastRecipient.objects.select_for_update(skip_locked=True)
            .filter(pk__in=recipient_ids, state__in=SENDABLE)
            .values_list("pk", flat=True)
        )
        if taken:
            BroadcastRecipient.objects.filter(pk__in=taken).update(attempts=F("attempts") + 1)


def _send_together(recipient_ids: list[int], now: dt.datetime) -> dict[str, int]:
    recipients = _load(recipient_ids)
    if not recipients:
        return {}
    broadcasts = {r.broadcast_id: r.broadcast for r in recipients}
    outcomes: dict[str, int] = {}
    for broadcast_id, broadcast in broadcasts.items():
        rows = [r for r in recipients if r.broadcast_id == broadcast_id]
        if broadcast.status != S.SENDING or (broadcast.end_at and broadcast.end_at <= now):
            # Paused (or its window ended) after the claim: hand the rows back at once so a
            # resume does not wait for the lease; a cancel or the window's end settles them.
            # The claim is not counted (pausing often must not fail them as a crash loop).
            BroadcastRecipient.objects.filter(pk__in=[r.pk for r in rows]).update(
                send_after=now, attempts=Greatest(F("attempts") - 1, 0), updated_at=now
            )
            outcomes["returned"] = outcomes.get("returned", 0) + len(rows)
            continue
        templates: dict[str, dict[str, Template]] = {}
        families = {broadcast.template_slug, *(r.variant for r in rows if r.variant)}
        for template in Template.objects.filter(slug__in=families):
            templates.setdefault(template.slug, {})[template.channel] = template
        keys = [
            idempotency_key(broadcast_id, r.contact_id, channel)
            for r in rows
            for channel in Channel.values
        ]
        existing = {m.idempotency_key: m for m in Message.objects.filter(idempotency_key__in=keys)}
        batch = Batch(broadcast=broadcast, templates=templates, existing=existing, now=now)
        for recipient in rows:
            recipient_send(batch, recipient)
            outcomes[recipient.state] = outcomes.get(recipient.state, 0) + 1
        BroadcastRecipient.objects.bulk_update(rows, UPDATED_FIELDS)
        touchpoints_write(batch.touchpoints)
    return outcomes


def _fail_one(recipient_id: int, exc: Exception, now: dt.datetime) -> None:
    with transaction.atomic():
        recipient = _load([recipient_id])
        if not recipient:
            return
        row = recipient[0]
        batch = Batch(broadcast=row.broadcast, templates={}, existing={}, now=now)
        row.state, row.reason, row.updated_at = R.FAILED, f"error: {exc}"[:255], now
        batch.touch(row, "failed", reason=row.reason)
        BroadcastRecipient.objects.bulk_update([row], UPDATED_FIELDS)
        touchpoints_write(batch.touchpoints)


def recipients_send(*, recipient_ids: list[int], now: dt.datetime | None = None) -> dict[str, int]:
    """Send claimed recipients in one transaction (rows locked, SKIP LOCKED: a duplicate task
    or a re-claim waits for nothing and sends nothing twice; only pending/held rows are
    taken). If the batch raises, each recipient is tried in its own transaction, and one
    that raises again is failed with the error. Returns the number per outcome."""
    now = now or timezone.now()
    recipients_take(recipient_ids)
    try:
        with transaction.atomic():
            return _send_together(recipient_ids, now)
    except Exception:
        logger.warning(
            "Sending %d broadcast recipients together failed; sending them one by one",
            len(recipient_ids),
            exc_info=True,
        )
    outcomes: dict[str, int] = {}
    for pk in recipient_ids:
        try:
            with transaction.atomic():
                done = _send_together([pk], now)
        except Exception as exc:
            logger.exception("Broadcast recipient %s failed", pk)
            _fail_one(pk, exc, now)
            done = {R.FAILED: 1}
        for state, n in done.items():
            outcomes[state] = outcomes.get(state, 0) + n
    return outcomes
