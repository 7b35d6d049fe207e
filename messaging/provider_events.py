"""Applying what providers report: delivery statuses, engagement, and customer replies.

channels_app verifies and normalises webhooks and publishes them; these services turn them
into message transitions, touchpoints and consent changes, idempotently.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Q

from channels_app.channels import Channel
from channels_app.events import EventType, InboundEvent, TrackingEvent
from channels_app.keywords import keyword_word

from . import selectors, signals
from .conversations import conversation_record_inbound, inbound_mark_handled
from .models import (
    Consent,
    ConsentSource,
    ConsentStatus,
    Contact,
    Direction,
    Message,
    TouchpointKind,
)
from .services import (
    consent_set,
    contact_upsert,
    mark_address_bad,
    message_transition,
    touchpoint_record,
)
from .status import MessageStatus

logger = logging.getLogger(__name__)

_STATUS_FOR_EVENT = {
    EventType.SENT: MessageStatus.SENT,
    EventType.DELIVERED: MessageStatus.DELIVERED,
    EventType.READ: MessageStatus.READ,
    EventType.FAILED: MessageStatus.FAILED,
    EventType.REJECTED: MessageStatus.FAILED,
    EventType.UNDELIVERED: MessageStatus.UNDELIVERED,
    EventType.BOUNCED: MessageStatus.FAILED,
}
# Engagement and advisory events: a touchpoint, no status change.
_TOUCHPOINT_ONLY = {
    EventType.DEFERRED: TouchpointKind.DEFERRED,
    EventType.OPENED: TouchpointKind.OPENED,
    EventType.CLICKED: TouchpointKind.CLICKED,
    EventType.COMPLAINED: TouchpointKind.COMPLAINED,
    EventType.UNSUBSCRIBED: TouchpointKind.UNSUBSCRIBED,
    EventType.SUBSCRIBED: "subscribed",
}
# Twilio delivery errors meaning the number itself is bad (PROVIDERS.md: permanent).
_INVALID_NUMBER_CODES = {"21211", "21614", "30005", "30006"}


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def _messages_for(events: Iterable[TrackingEvent]) -> dict[str, Message]:
    """Find each event's message in one query: by our id, else by the provider's id."""
    ours = {u for e in events if (u := _as_uuid(e.message_id))}
    theirs = {e.provider_message_id for e in events if e.provider_message_id}
    if not ours and not theirs:
        return {}
    rows = Message.objects.filter(
        Q(pk__in=ours) | Q(provider_message_id__in=theirs), direction=Direction.OUTBOUND
    )
    found: dict[str, Message] = {}
    for message in rows:
        found[str(message.pk)] = message
        if message.provider_message_id:
            found[message.provider_message_id] = message
    return found


def tracking_events_apply(*, events: list[TrackingEvent]) -> dict[str, int]:
    """Apply provider status/engagement events. Unknown messages are logged and skipped."""
    counts = {"applied": 0, "ignored": 0, "unknown_message": 0}
    messages = _messages_for(events)
    for event in events:
        message = messages.get(str(_as_uuid(event.message_id) or "")) or messages.get(
            event.provider_message_id
        )
        if message is None:
            logger.info(
                "Status %s for unknown message (ours=%r, provider=%r); ignored",
                event.event_type,
                event.message_id,
                event.provider_message_id,
            )
            counts["unknown_message"] += 1
            continue
        # Refresh: an earlier event in this batch may have moved it.
        message.status = Message.objects.values_list("status", flat=True).get(pk=message.pk)
        applied = _apply_one(message, event)
        counts["applied" if applied else "ignored"] += 1
    return counts


_CONSENT_FOR_EVENT = {
    EventType.COMPLAINED: ConsentStatus.UNSUBSCRIBED,
    EventType.UNSUBSCRIBED: ConsentStatus.UNSUBSCRIBED,
    EventType.SUBSCRIBED: ConsentStatus.SUBSCRIBED,
}


def _event_touchpoint(message: Message, event: TrackingEvent, kind: str, when, data: dict) -> None:
    """A provider event on the timeline, once per provider event id."""
    touchpoint_record(
        contact_id=message.contact_id,
        kind=kind,
        direction=Direction.INBOUND,
        channel=message.channel,
        message_id=message.pk,
        occurred_at=when,
        data=data,
        dedupe_key=f"evt:{event.provider}:{event.event_id}"[:200],
    )


def _apply_one(message: Message, event: TrackingEvent) -> bool:
    data = {"provider_status": event.provider_status, "provider_event_id": event.event_id}
    if event.reason:
        data["reason"] = event.reason[:500]
    if event.error_code:
        data["code"] = event.error_code
    # Providers stamp events to the second (SendGrid) or not at all (Twilio); the timeline
    # must still read in order, so an event never sorts before what we already recorded.
    data["provider_timestamp"] = event.timestamp.isoformat()
    known = [t for t in (message.sending_at, message.sent_at, message.delivered_at) if t]
    when = max([event.timestamp, *known])
    target = _STATUS_FOR_EVENT.get(event.event_type)
    if target is None and event.event_type == EventType.QUEUED and message.status == "unknown":
        # SendGrid's `processed` (Twilio's `queued`) is the provider saying it accepted the
        # message: for a send whose outcome we never learned, that settles it as `sent`.
        target = MessageStatus.SENT
    with transaction.atomic():
        if target is not None:
            fields: dict[str, str] = {}
            if event.provider_message_id and not message.provider_message_id:
                fields["provider_message_id"] = event.provider_message_id
            if target in (MessageStatus.FAILED, MessageStatus.UNDELIVERED):
                fields["error_code"] = (event.error_code or event.event_type)[:32]
                fields["error_message"] = (event.reason or f"provider reported {event.event_type}")[
                    :2000
                ]
            kind = TouchpointKind.BOUNCED if event.event_type == EventType.BOUNCED else None
            moved = message_transition(
                message=message,
                to=target,
                fields=fields,
                occurred_at=when,
                touchpoint_kind=kind,
                touchpoint_data=data,
            )
            if not moved and event.event_type == EventType.BOUNCED:
                # A bounce after "delivered" changes no status but belongs on the timeline.
                _event_touchpoint(message, event, TouchpointKind.BOUNCED, when, data)
            _after_failure(message, event)
            return moved
        kind = _TOUCHPOINT_ONLY.get(event.event_type)
        if kind is None:
            return False
        if event.url:
            data["url"] = event.url[:2000]
        _event_touchpoint(message, event, kind, when, data)
        consent = _CONSENT_FOR_EVENT.get(event.event_type)
        if consent is not None:
            consent_set(
                contact=message.contact,
                channel=message.channel,
                status=consent,
                source=ConsentSource.PROVIDER,
                message=message,
                note=f"{event.provider} {event.provider_status or event.event_type}",
                occurred_at=event.timestamp,
            )
        transaction.on_commit(
            lambda: signals.message_status_changed.send(
                sender=Message,
                message_id=message.pk,
                contact_id=message.contact_id,
                channel=message.channel,
                status=message.status,
                previous_status=message.status,
                kind=kind,
            ),
            robust=True,
        )
    return True


def _after_failure(message: Message, event: TrackingEvent) -> None:
    """Address-level consequences of a failure: opt-outs, hard bounces, dead numbers."""
    if event.error_code == "21610":
        consent_set(
            contact=message.contact,
            channel=message.channel,
            status=ConsentStatus.UNSUBSCRIBED,
            source=ConsentSource.PROVIDER,
            message=message,
            note="provider error 21610: recipient opted out",
        )
    elif (
        event.event_type == EventType.BOUNCED and event.raw.get("type", "bounce") == "bounce"
    ) or (event.error_code in _INVALID_NUMBER_CODES and message.channel != Channel.EMAIL):
        mark_address_bad(message)


# --- Inbound --------------------------------------------------------------------------


def _answered_message(event: InboundEvent) -> tuple[Message | None, str]:
    """The outbound message a reply answers, and how it was matched."""
    outbound = Message.objects.filter(direction=Direction.OUTBOUND)
    if event.channel == Channel.EMAIL:
        token_id = _as_uuid(event.reply_token_message_id)
        if token_id:
            found = outbound.filter(pk=token_id).select_related("contact").first()
            if found:
                return found, "reply_token"
        for ref in event.in_reply_to:
            # Our Message-ID is <uuid@domain>; SendGrid's is <X-Message-Id…>.
            local = ref.strip("<>").split("@", 1)[0]
            ref_id = _as_uuid(local)
            query = Q(pk=ref_id) if ref_id else Q(provider_message_id=local.split(".", 1)[0])
            found = outbound.filter(query, channel=Channel.EMAIL).select_related("contact").first()
            if found:
                return found, "in_reply_to"
        lookup = {"to_address__iexact": event.sender}
    else:
        lookup = {"to_address": event.sender}
    found = (
        outbound.filter(channel=event.channel, **lookup)
        .select_related("contact")
        .order_by("-created_at")
        .first()
    )
    return found, ("sender" if found else "")


def _inbound_contact(event: InboundEvent) -> Contact:
    contact = selectors.contact_by_address(channel=event.channel, address=event.sender)
    if contact is None:
        field = {"email": "email", "sms": "phone", "whatsapp": "whatsapp"}[event.channel]
        data = {"first_name": (event.profile_name or "")[:150]}
        if field != "email" or len(event.sender) <= 254:  # longer is no deliverable address
            data[field] = event.sender
        contact, _ = contact_upsert(
            external_id=None, data=data, created_via=Contact.CreatedVia.INBOUND
        )
    elif event.channel == Channel.WHATSAPP and not contact.whatsapp:
        contact.whatsapp = event.sender
        contact.save(update_fields=["whatsapp", "updated_at"])
    return contact


def _contacts_at(channel: str, address: str) -> list[Contact]:
    """Every contact this number reaches on the channel (numbers are not unique per contact)."""
    if channel == Channel.WHATSAPP:
        query = Q(whatsapp=address) | Q(whatsapp="", phone=address)
    else:
        query = Q(phone=address)
    return list(Contact.objects.filter(query).select_for_update())


def _apply_keyword(event: InboundEvent, inbound: Message) -> bool:
    """STOP unsubscribes the channel for everyone the number reaches; START/YES/UNSTOP lifts
    such an opt-out (and only that: a "yes" to a question is not a marketing opt-in). True
    when the message was a keyword that needed no human."""
    if event.channel not in (Channel.SMS, Channel.WHATSAPP) or not event.keyword:
        return False
    if event.keyword == "help":
        return True
    note = f"texted {event.full_body.strip()[:40]!r}"
    changed = False
    for contact in _contacts_at(event.channel, event.sender):
        current = (
            Consent.objects.filter(contact=contact, channel=event.channel)
            .values_list("status", flat=True)
            .first()
        )
        if event.keyword == "stop":
            target = ConsentStatus.UNSUBSCRIBED
        elif current == ConsentStatus.UNSUBSCRIBED:
            target = ConsentStatus.SUBSCRIBED
        else:
            continue
        changed |= consent_set(
            contact=contact,
            channel=event.channel,
            status=target,
            source=ConsentSource.KEYWORD,
            message=inbound,
            note=note,
            occurred_at=event.timestamp,
        )
    if event.keyword == "stop" or changed:
        return True
    # START and UNSTOP are only ever keywords; a "yes" that lifted no opt-out answers
    # something a person asked, so a person reads it.
    return keyword_word(event.full_body or event.body) != "YES"


def _truncation(event: InboundEvent) -> dict[str, object]:
    """The flag a message cut to the inbound size limits carries (message and touchpoint)."""
    if not event.truncated:
        return {}
    return {"truncated": True, "original_sizes": dict(event.truncated)}


def inbound_message_apply(*, event: InboundEvent) -> Message | None:
    """Store a customer's message, link it to what it answers, apply STOP/START."""
    key = f"inbound:{event.provider}:{event.event_id}"[:255]
    with transaction.atomic():
        if Message.objects.filter(idempotency_key=key).exists():
            return None
        answered, matched_by = _answered_message(event)
        # A signed token or a header naming our message identifies the conversation even when
        # the customer answers from another address (an alias, a forward).
        contact = answered.contact if answered is not None else _inbound_contact(event)
        # References only (name, type, size, and a link or a hash): never the content.
        media = [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "url": a.url,
                **({"sha256": a.sha256} if a.sha256 else {}),
            }
            for a in event.attachments
        ]
        try:
            with transaction.atomic():
                inbound = Message.objects.create(
                    direction=Direction.INBOUND,
                    channel=event.channel,
                    contact=contact,
                    to_address=event.recipient[:320],
                    from_address=event.sender[:320],
                    subject=event.subject[:500],
                    body=event.body,
                    html_body=event.html,
                    media=media,
                    status=MessageStatus.RECEIVED,
                    provider=event.provider,
                    provider_message_id=event.event_id[:128],
                    idempotency_key=key,
                    source="inbound",
                    in_reply_to=answered,
                    received_at=event.timestamp,
                    metadata={
                        "full_body": event.full_body if event.full_body != event.body else "",
                        "profile_name": event.profile_name,
                        "keyword": event.keyword,
                        **_truncation(event),
                    },
                )
        except IntegrityError:
            return None  # the same message raced in through a parallel retry
        touchpoint_record(
            contact_id=contact.pk,
            kind=TouchpointKind.REPLIED,
            direction=Direction.INBOUND,
            channel=event.channel,
            message_id=answered.pk if answered else None,
            occurred_at=event.timestamp,
            data={
                "inbound_message_id": str(inbound.pk),
                "in_reply_to": str(answered.pk) if answered else None,
                "matched_by": matched_by,
                "body": event.body[:500],
                "keyword": event.keyword,
                "attachments": len(media),
                **_truncation(event),
            },
            dedupe_key=f"in:{inbound.pk}",
        )
        if _apply_keyword(event, inbound):
            # Keywords are answered automatically (the provider's opt-out replies, HELP).
            inbound_mark_handled(message=inbound, handled_by="keyword")
        else:
            # Anything else waits for a human.
            conversation_record_inbound(contact=contact, message=inbound)
        if event.channel == Channel.WHATSAPP:
            Contact.objects.filter(
                Q(last_inbound_whatsapp_at__lt=event.timestamp)
                | Q(last_inbound_whatsapp_at__isnull=True),
                pk=contact.pk,
            ).update(last_inbound_whatsapp_at=event.timestamp)
        transaction.on_commit(
            lambda: signals.message_received.send(
                sender=Message,
                message_id=inbound.pk,
                contact_id=contact.pk,
                channel=event.channel,
                in_reply_to_id=answered.pk if answered else None,
                keyword=event.keyword,
            ),
            robust=True,
        )
    return inbound
