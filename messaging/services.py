"""Writes of customer-side state. Services are the only writers of business state."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_app.channels import Channel, normalize_phone
from channels_app.providers.base import OutboundMessage, ProviderError
from channels_app.providers.registry import get_provider
from channels_app.ratelimit import reserve_send_slot
from config import task_limits

from . import policies, signals
from .models import (
    Consent,
    ConsentChange,
    ConsentSource,
    ConsentStatus,
    Contact,
    Direction,
    Message,
    Template,
    Touchpoint,
    TouchpointKind,
)
from .rendering import RenderedContent, TemplateRenderError, render_content, render_template
from .status import TIMESTAMP_FIELD, MessageStatus, sources_for

logger = logging.getLogger(__name__)


class MessageRequestError(ValueError):
    """A send request that cannot become a message; `errors` maps field → messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


class IdempotencyConflict(ValueError):
    """The idempotency key was already used for a different request."""


# --- Touchpoints ----------------------------------------------------------------------


def touchpoint_record(
    *,
    contact_id: int,
    kind: str,
    direction: str = Direction.INTERNAL,
    channel: str = "",
    message_id: uuid.UUID | str | None = None,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    actor_id: int | None = None,
    defer_to: list[Touchpoint] | None = None,
) -> None:
    """Append one timeline entry; a repeated dedupe key writes nothing. With `defer_to`, the
    row is appended to that list instead, for the caller to write with `touchpoints_write`
    in the same transaction."""
    row = Touchpoint(
        contact_id=contact_id,
        kind=kind,
        direction=direction,
        channel=channel,
        message_id=message_id,
        occurred_at=occurred_at or timezone.now(),
        data=data or {},
        dedupe_key=dedupe_key or f"tp:{uuid.uuid4().hex}",
        actor_id=actor_id,
    )
    if defer_to is not None:
        defer_to.append(row)
    else:
        touchpoints_write([row])


def touchpoints_write(rows: list[Touchpoint]) -> None:
    """Insert timeline entries in one statement; repeated dedupe keys write nothing."""
    if rows:
        Touchpoint.objects.bulk_create(rows, ignore_conflicts=True)


# --- Contacts and consent -------------------------------------------------------------

CONTACT_FIELDS = (
    "email",
    "phone",
    "whatsapp",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "preferred_channel",
)


def _clean_contact_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields = {k: data[k] for k in CONTACT_FIELDS if k in data and data[k] is not None}
    for name in ("phone", "whatsapp"):
        if fields.get(name):
            fields[name] = normalize_phone(fields[name])
    if fields.get("email"):
        fields["email"] = fields["email"].strip().lower()
    return fields


def _merge_attributes(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current or {})
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)  # null removes an attribute
        else:
            merged[key] = value
    return merged


def contact_upsert(
    *,
    external_id: str | None,
    data: dict[str, Any],
    created_via: str = Contact.CreatedVia.API,
    consent_source: str = ConsentSource.API,
    actor_id: int | None = None,
) -> tuple[Contact, bool]:
    """Create or update the contact with this external id: given fields are set, attributes
    merged key by key (a null value removes a key), consent changes recorded. Without an
    external id a new contact is created (e.g. known only by the address it wrote from)."""
    fields = _clean_contact_fields(data)
    if external_id is not None and not data.get("consent"):
        # Most upserts (every event names its contact) repeat what is stored: one plain read,
        # no lock, no write. A concurrent change is no different from one a moment later.
        contact = next(iter(Contact.objects.filter(external_id=external_id).order_by()[:1]), None)
        if contact is not None and not _contact_changes(contact, fields, data):
            return contact, False
    with transaction.atomic():
        contact = None
        if external_id is not None:
            contact = Contact.objects.select_for_update().filter(external_id=external_id).first()
        created = contact is None
        if created:
            try:
                with transaction.atomic():
                    contact = Contact.objects.create(
                        external_id=external_id,
                        created_via=created_via,
                        attributes=_merge_attributes({}, data.get("attributes") or {}),
                        **fields,
                    )
            except IntegrityError:
                # Another request created it first: update that one instead.
                contact = Contact.objects.select_for_update().get(external_id=external_id)
                created = False
        if not created:
            _apply_contact_changes(contact, fields, data)
        for channel, status in (data.get("consent") or {}).items():
            consent_set(
                contact=contact,
                channel=channel,
                status=status,
                source=consent_source,
                actor_id=actor_id,
            )
    return contact, created


# A provider's verdict on an address stops counting once the contact has another address.
_ADDRESS_FLAGS = {
    "email": "email_undeliverable",
    "phone": "phone_invalid",
    "whatsapp": "whatsapp_invalid",
}


def _contact_changes(contact: Contact, fields: dict[str, Any], data: dict[str, Any]) -> set[str]:
    """The names of the contact's fields these inputs would change."""
    changed = {name for name, value in fields.items() if getattr(contact, name) != value}
    if data.get("attributes"):
        merged = _merge_attributes(contact.attributes, data["attributes"])
        if merged != (contact.attributes or {}):
            changed.add("attributes")
    return changed


def _apply_contact_changes(contact: Contact, fields: dict[str, Any], data: dict[str, Any]) -> None:
    changed = _contact_changes(contact, fields, data)
    if not changed:
        return  # nothing to write: an UPDATE of every column would only churn the row
    for name in changed & set(fields):
        if name in _ADDRESS_FLAGS:
            setattr(contact, _ADDRESS_FLAGS[name], False)
            changed.add(_ADDRESS_FLAGS[name])
        setattr(contact, name, fields[name])
    if "attributes" in changed:
        contact.attributes = _merge_attributes(contact.attributes, data["attributes"])
    contact.save(update_fields=[*sorted(changed), "updated_at"])


def contact_update(
    *,
    contact: Contact,
    data: dict[str, Any],
    consent_source: str = ConsentSource.API,
    actor_id: int | None = None,
) -> Contact:
    """Apply given fields, attributes and consent to a known contact (e.g. one found by the
    address a request named)."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().get(pk=contact.pk)
        _apply_contact_changes(locked, _clean_contact_fields(data), data)
        for channel, status in (data.get("consent") or {}).items():
            consent_set(
                contact=locked,
                channel=channel,
                status=status,
                source=consent_source,
                actor_id=actor_id,
            )
    return locked


def consent_set(
    *,
    contact: Contact,
    channel: str,
    status: str,
    source: str,
    message: Message | None = None,
    note: str = "",
    actor_id: int | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Change a contact's consent on a channel, keeping the history; False if unchanged."""
    now = occurred_at or timezone.now()
    with transaction.atomic():
        consent, _ = Consent.objects.select_for_update().get_or_create(
            contact=contact,
            channel=channel,
            defaults={"status": ConsentStatus.UNKNOWN, "changed_at": now},
        )
        previous = consent.status
        if previous == status:
            return False
        consent.status, consent.source, consent.changed_at = status, source, now
        consent.save(update_fields=["status", "source", "changed_at"])
        change = ConsentChange.objects.create(
            contact=contact,
            channel=channel,
            status=status,
            previous_status=previous,
            source=source,
            note=note[:255],
            message=message,
            changed_by_id=actor_id,
            changed_at=now,
        )
        touchpoint_record(
            contact_id=contact.pk,
            kind=TouchpointKind.CONSENT_CHANGED,
            direction=Direction.INBOUND if source == ConsentSource.KEYWORD else Direction.INTERNAL,
            channel=channel,
            message_id=message.pk if message else None,
            occurred_at=now,
            data={"status": status, "previous_status": previous, "source": source, "note": note},
            dedupe_key=f"consent:{change.pk}",
            actor_id=actor_id,
        )
        transaction.on_commit(
            lambda: signals.consent_changed.send(
                sender=Consent,
                contact_id=contact.pk,
                channel=channel,
                status=status,
                previous_status=previous,
                source=source,
            ),
            robust=True,
        )
    return True


# --- Message status: the one place transitions happen ---------------------------------


def message_transition(
    *,
    message: Message,
    to: str,
    fields: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    touchpoint_kind: str | None = None,
    touchpoint_data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    actor_id: int | None = None,
) -> bool:
    """Move a message to `to` if the status machine allows it from where it is now in the
    database; write its touchpoint and publish the change. False when not allowed (late,
    repeated or backwards updates are ignored)."""
    now = timezone.now()
    when = occurred_at or now
    update: dict[str, Any] = {"status": to, "updated_at": now, **(fields or {})}
    stamp = TIMESTAMP_FIELD.get(to)
    if stamp == "queued_at":
        # A retry going back to `queued` keeps the original queued_at.
        update[stamp] = Coalesce(F(stamp), Value(when))
    elif stamp:
        update[stamp] = when
    # No savepoint inside a caller's transaction: nothing here is meant to fail on its own
    # (the touchpoint insert ignores conflicts), so an error rolls the caller back as a whole
    # rather than costing every transition two more round trips (SAVEPOINT, RELEASE).
    with transaction.atomic(savepoint=False):
        moved = Message.objects.filter(pk=message.pk, status__in=sources_for(to)).update(**update)
        if not moved:
            return False
        previous = message.status
        message.status = to
        for name, value in (fields or {}).items():
            setattr(message, name, value)
        kind = touchpoint_kind or to
        touchpoint_record(
            contact_id=message.contact_id,
            kind=kind,
            direction=message.direction,
            channel=message.channel,
            message_id=message.pk,
            occurred_at=when,
            data=touchpoint_data or {},
            dedupe_key=dedupe_key or f"msg:{message.pk}:{kind}",
            actor_id=actor_id,
        )
        transaction.on_commit(
            lambda: signals.message_status_changed.send(
                sender=Message,
                message_id=message.pk,
                contact_id=message.contact_id,
                channel=message.channel,
                status=to,
                previous_status=previous,
                kind=kind,
            ),
            robust=True,
        )
    return True


# --- Creating outbound messages -------------------------------------------------------


def request_fingerprint(payload: Any) -> str:
    """A stable hash of a request body, to tell a replay from a different request."""
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _render(
    *,
    contact: Contact,
    template: Template | None,
    body: str,
    subject: str,
    html_body: str,
    context: dict[str, Any],
) -> RenderedContent:
    try:
        if template is None:
            return render_content(
                contact=contact, subject=subject, body=body, html_body=html_body, event=context
            )
        return render_template(template, contact=contact, event=context)
    except TemplateRenderError as exc:
        raise MessageRequestError(exc.errors) from exc


def message_create(
    *,
    contact: Contact,
    channel: str,
    template: Template | None = None,
    body: str = "",
    subject: str = "",
    html_body: str = "",
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    source: str = "api",
    category: str = policies.Category.TRANSACTIONAL,
    actor_id: int | None = None,
    metadata: dict[str, Any] | None = None,
    decision: policies.Decision | None = None,
    fail_on_render_error: bool = False,
) -> tuple[Message, bool]:
    """Queue an outbound message (delivered by `deliver_message` after commit).

    Send policies decide first (`decision` when the caller already evaluated them): the
    message is queued, held until a time, or skipped with the reason. Returns (message,
    created); the same idempotency key returns the first message, and with a different
    fingerprint raises IdempotencyConflict. A template that cannot be rendered (an error, a
    limit) raises MessageRequestError, or with `fail_on_render_error` (unattended callers:
    journeys) makes the message `failed` with the reason on its timeline.
    """
    if idempotency_key:
        existing = Message.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return idempotent_replay(existing, fingerprint), False
    if template is not None and template.channel != channel:
        raise MessageRequestError(
            {"template": [f"Template {template.slug!r} is for {template.channel}, not {channel}."]}
        )
    if template is None and not (body or html_body):
        raise MessageRequestError({"body": ["Give a template or a body."]})
    if channel == Channel.EMAIL and template is None and not subject:
        raise MessageRequestError({"subject": ["An email needs a subject."]})
    render_failure = ""
    try:
        content = _render(
            contact=contact,
            template=template,
            body=body,
            subject=subject,
            html_body=html_body,
            context=context or {},
        )
    except MessageRequestError as exc:
        if not fail_on_render_error:
            raise
        render_failure, content = str(exc), RenderedContent()
    address = contact.address_for(channel)
    if not address:
        raise MessageRequestError({"channel": [f"The contact has no {channel} address."]})
    if render_failure:
        # Nothing to check on content that does not exist, and no policy to ask: it fails.
        decision = policies.Decision(True, "")
    elif len(content.subject) > 500:
        raise MessageRequestError({"subject": ["The rendered subject is over 500 characters."]})
    elif channel in (Channel.SMS, Channel.WHATSAPP) and not content.content_sid:
        if not content.body.strip():
            raise MessageRequestError({"body": ["The rendered body is empty."]})
        if len(content.body) > 1600:
            raise MessageRequestError({"body": ["The rendered body is over 1600 characters."]})
    now = timezone.now()
    if decision is None:
        decision = policies.evaluate_send(
            contact=contact,
            channel=channel,
            category=category,
            address=address,
            now=now,
            has_body=bool(content.body.strip()),
            has_content_sid=bool(content.content_sid),
            has_template=template is not None,
        )
    message = Message(
        direction=Direction.OUTBOUND,
        channel=channel,
        contact=contact,
        template=template,
        to_address=address,
        subject=content.subject,
        body=content.body,
        html_body=content.html_body,
        content_sid=content.content_sid,
        content_variables=content.content_variables,
        status=MessageStatus.QUEUED,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
        source=source,
        category=category,
        metadata=metadata or {},
        queued_at=now,
        next_attempt_at=decision.hold_until or now,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
            touchpoint_record(
                contact_id=contact.pk,
                kind=TouchpointKind.QUEUED,
                direction=Direction.OUTBOUND,
                channel=channel,
                message_id=message.pk,
                occurred_at=now,
                data={"source": source, "template": template.slug if template else None},
                dedupe_key=f"msg:{message.pk}:queued",
                actor_id=actor_id,
            )
            if render_failure:
                message_transition(
                    message=message,
                    to=MessageStatus.FAILED,
                    fields={"error_code": "template_error", "error_message": render_failure},
                    touchpoint_data={"reason": render_failure, "code": "template_error"},
                )
            elif decision.held:
                # Held, not dropped: the sweeper enqueues it once next_attempt_at has passed.
                touchpoint_record(
                    contact_id=contact.pk,
                    kind=TouchpointKind.HELD,
                    direction=Direction.OUTBOUND,
                    channel=channel,
                    message_id=message.pk,
                    occurred_at=now,
                    data={"until": decision.hold_until.isoformat(), "reason": decision.reason},
                    dedupe_key=f"msg:{message.pk}:held",
                )
            elif not decision.allowed:
                message_transition(
                    message=message,
                    to=MessageStatus.SKIPPED,
                    fields={"error_code": decision.code, "error_message": decision.reason},
                    touchpoint_data={"reason": decision.reason, "code": decision.code},
                )
            else:
                transaction.on_commit(lambda: enqueue_delivery(message.pk), robust=True)
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = Message.objects.get(idempotency_key=idempotency_key)
        return idempotent_replay(existing, fingerprint), False
    return message, True


def idempotent_replay(existing: Any, fingerprint: str) -> Any:
    """The stored result of a replayed idempotency key (a Message, an Event…), or
    IdempotencyConflict when the key came back with a different request."""
    stored = existing.request_fingerprint
    if fingerprint and stored and stored != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request body."
        )
    return existing


def enqueue_delivery(message_id: uuid.UUID | str, countdown: float | None = None) -> None:
    from .tasks import deliver_message

    deliver_message.apply_async((str(message_id),), countdown=countdown)


# --- Delivering -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOutcome:
    result: str
    retry_in: float | None = None


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; never sooner than the provider asked."""
    ceiling = min(
        settings.MESSAGE_RETRY_MAX_SECONDS,
        settings.MESSAGE_RETRY_BASE_SECONDS * (2 ** max(attempt - 1, 0)),
    )
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after + random.uniform(0, 1))
    return round(delay, 3)


def _outbound(message: Message) -> OutboundMessage:
    content_sid, variables = message.content_sid, dict(message.content_variables or {})
    if (
        message.channel == Channel.WHATSAPP
        and content_sid
        and message.body
        and policies.in_whatsapp_window(message.contact, timezone.now())
    ):
        # Decided at send time, not when queued: a held message may leave after the window
        # has opened or closed. Inside it the freeform body goes; outside, the template.
        content_sid, variables = "", {}
    return OutboundMessage(
        message_id=str(message.pk),
        channel=message.channel,
        to=message.to_address,
        body=message.body,
        subject=message.subject,
        html_body=message.html_body,
        content_sid=content_sid,
        content_variables=variables,
        media_urls=tuple(u for u in message.media if isinstance(u, str)),
        categories=tuple(c for c in (message.source, message.category) if c),
    )


def _count_delivery_try(message_id: uuid.UUID) -> tuple[str, int] | None:
    """Count one more delivery try of a queued message, committed at once; its (channel,
    tries), or None when it is not queued (any more) or does not exist.

    Committed before anything that could kill the worker: a message whose delivery keeps
    crashing its worker before the claim would otherwise be redelivered forever (acks_late +
    reject_on_worker_lost). One conditional UPDATE ... RETURNING (PostgreSQL, SQLite >= 3.35)
    instead of a status read, an UPDATE and a re-read: this runs for every send.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    pk = Message._meta.pk.get_db_prep_value(message_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET delivery_tries = delivery_tries + 1"  # noqa: S608 (no input)
            " WHERE id = %s AND status = %s RETURNING channel, delivery_tries",
            [pk, MessageStatus.QUEUED.value],
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def message_deliver(*, message_id: uuid.UUID | str) -> DeliveryOutcome:
    """Send one queued message: claim it (committed), call the provider, record the outcome.

    A message not in `queued` is left alone, so a redelivered task never sends twice. The
    sender's rate limit is honoured first: the worker waits for a close slot, or hands the
    message back to the queue until a far one.
    """
    message_id = Message._meta.pk.to_python(message_id)
    counted = _count_delivery_try(message_id)
    if counted is None:
        status = Message.objects.filter(pk=message_id).values_list("status", flat=True).first()
        return DeliveryOutcome("missing" if status is None else f"already {status}")
    channel, tries = counted
    if tries > settings.MESSAGE_MAX_ATTEMPTS:
        parked = Message.objects.select_related("contact").get(pk=message_id)
        message_transition(
            message=parked,
            to=MessageStatus.FAILED,
            fields={
                "error_code": "crash_loop",
                "error_message": f"its delivery stopped the worker {tries - 1} times before "
                "the provider was called",
            },
            touchpoint_data={"reason": "delivery crashed its worker repeatedly", "tries": tries},
        )
        return DeliveryOutcome("failed")
    slot = reserve_send_slot(channel=channel, sender=get_provider(channel).sender)
    if not slot.granted:
        # A hand-back is not a crash: don't let waiting for the sender count towards the guard.
        Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
        return DeliveryOutcome("rate_limited", retry_in=slot.wait)
    if slot.wait > 0:
        time.sleep(slot.wait)
    try:
        # The task's soft limit, in every pool: the claim and the provider call only start
        # when the call's worst case (connect + read timeouts) fits before it. Otherwise the
        # message stays `queued`, untouched, for the sweeper to hand to another run.
        task_limits.check(need=provider_call_seconds(), phase="the provider call")
    except task_limits.SoftTimeLimitExceeded:
        Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
        raise
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("contact")
            .filter(pk=message_id)
            .first()
        )
        if message is None:
            return DeliveryOutcome("missing")
        if message.status != MessageStatus.QUEUED:
            return DeliveryOutcome(f"already {message.status}")
        wait = (
            (message.next_attempt_at - timezone.now()).total_seconds()
            if (message.next_attempt_at)
            else 0
        )
        if wait > 1:
            # A duplicate or redelivered task during a backoff or a hold: the provider asked
            # us to wait (Retry-After), so the scheduled attempt (or the sweeper) sends it at
            # its time; this task just ends.
            Message.objects.filter(pk=message_id).update(delivery_tries=F("delivery_tries") - 1)
            return DeliveryOutcome("not due")
        decision = policies.check_send(
            contact=message.contact,
            channel=message.channel,
            category=message.category,
            address=message.to_address,
            lock=True,
        )
        if not decision.allowed:
            message_transition(
                message=message,
                to=MessageStatus.SKIPPED,
                fields={"error_code": decision.code, "error_message": decision.reason},
                touchpoint_data={"reason": decision.reason, "code": decision.code},
            )
            return DeliveryOutcome("skipped")
        provider = get_provider(message.channel)
        attempt = message.attempts + 1
        message_transition(
            message=message,
            to=MessageStatus.SENDING,
            fields={"attempts": attempt, "provider": provider.name, "next_attempt_at": None},
            touchpoint_data={"attempt": attempt},
            dedupe_key=f"msg:{message.pk}:sending:{attempt}",
        )
    try:
        result = provider.send(_outbound(message))
    except ProviderError as exc:
        return _delivery_failed(message, exc, attempt)
    except Exception as exc:
        # A bug or an unexpected reply after the request left: the provider may have the
        # message, so it is parked as `unknown` for a status callback to settle.
        logger.exception("Unexpected error delivering message %s", message.pk)
        _mark_unknown(message, f"unexpected error during the provider call: {exc!r}")
        return DeliveryOutcome("unknown")
    with transaction.atomic():
        fields = {
            "provider_message_id": result.provider_message_id,
            "from_address": result.from_address,
            "error_code": "",
            "error_message": "",
        }
        moved = message_transition(
            message=message,
            to=MessageStatus.SENT,
            fields=fields,
            touchpoint_data={"provider_message_id": result.provider_message_id, "attempt": attempt},
        )
        if not moved:
            # A status callback got here first (it carries our id); keep the provider id.
            Message.objects.filter(pk=message.pk, provider_message_id="").update(
                provider_message_id=result.provider_message_id,
                from_address=result.from_address,
            )
    return DeliveryOutcome("sent")


def provider_call_seconds() -> float:
    """The worst case of one provider call: connect and read timeouts, and a margin to
    record its outcome."""
    return 2 * settings.PROVIDER_TIMEOUT_SECONDS + 5


def _mark_unknown(message: Message, reason: str, now: datetime | None = None) -> None:
    # next_attempt_at: when `messaging.reconcile` asks the provider, if no callback came first.
    now = now or timezone.now()
    recheck = now + timedelta(seconds=settings.UNKNOWN_RECONCILE_AFTER_SECONDS)
    message_transition(
        message=message,
        to=MessageStatus.UNKNOWN,
        occurred_at=now,
        fields={
            "error_code": "unknown",
            "error_message": reason[:2000],
            "next_attempt_at": recheck,
        },
        touchpoint_data={"reason": reason[:500]},
    )


def mark_address_bad(message: Message) -> None:
    """The provider says this message's address is dead: flag it, if it is still the contact's
    current address for that channel (a late report about an old address changes nothing)."""
    field = {Channel.EMAIL: "email", Channel.SMS: "phone", Channel.WHATSAPP: "whatsapp"}[
        message.channel
    ]
    current = Contact.objects.filter(pk=message.contact_id).values_list(field, "phone").first()
    if current is None:
        return
    address = current[0] or (current[1] if field == "whatsapp" else "")
    if address and address.lower() == message.to_address.lower():
        Contact.objects.filter(pk=message.contact_id).update(**{_ADDRESS_FLAGS[field]: True})


def _delivery_failed(message: Message, exc: ProviderError, attempt: int) -> DeliveryOutcome:
    error = {"error_code": exc.code[:32], "error_message": exc.message[:2000]}
    if exc.ambiguous:
        _mark_unknown(message, f"no answer from the provider ({exc.message})")
        return DeliveryOutcome("unknown")
    if exc.permanent or attempt >= settings.MESSAGE_MAX_ATTEMPTS:
        reason = (
            exc.message if exc.permanent else f"gave up after {attempt} attempts: {exc.message}"
        )
        with transaction.atomic():
            message_transition(
                message=message,
                to=MessageStatus.FAILED,
                fields={**error, "error_message": reason[:2000]},
                touchpoint_data={"code": exc.code, "reason": reason[:500], "attempt": attempt},
            )
            if exc.unsubscribed:
                consent_set(
                    contact=message.contact,
                    channel=message.channel,
                    status=ConsentStatus.UNSUBSCRIBED,
                    source=ConsentSource.PROVIDER,
                    message=message,
                    note=f"provider error {exc.code}: recipient opted out",
                )
            if exc.invalid_address:
                mark_address_bad(message)
        return DeliveryOutcome("failed")
    delay = retry_delay(attempt, exc.retry_after)
    message_transition(
        message=message,
        to=MessageStatus.QUEUED,
        fields={**error, "next_attempt_at": timezone.now() + timedelta(seconds=delay)},
        touchpoint_kind=TouchpointKind.RETRYING,
        touchpoint_data={"attempt": attempt, "retry_in_seconds": delay, "code": exc.code},
        dedupe_key=f"msg:{message.pk}:retrying:{attempt}",
    )
    return DeliveryOutcome("retrying", retry_in=delay)


def messages_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Recover from crashes: re-queue `queued` messages whose task was lost, and park
    messages stuck in `sending` as `unknown` (never resend them blindly)."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.MESSAGE_QUEUED_LEASE_SECONDS)
    # Due (a held message whose hold ended, a retry whose task was lost) and not brand new
    # (a fresh message's task is normally on its way).
    stale_ids = list(
        Message.objects.filter(
            status=MessageStatus.QUEUED, next_attempt_at__lte=now, updated_at__lt=now - lease
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale_ids:
        # updated_at is the sweeper's lease (next_attempt_at is the provider's backoff, which
        # delivery honours): the next sweep leaves them alone while their task runs.
        Message.objects.filter(pk__in=stale_ids, status=MessageStatus.QUEUED).update(updated_at=now)
        for pk in stale_ids:
            enqueue_delivery(pk)
    timeout = timedelta(seconds=settings.MESSAGE_SENDING_TIMEOUT_SECONDS)
    stuck = list(
        Message.objects.filter(status=MessageStatus.SENDING, sending_at__lt=now - timeout).only(
            "pk", "contact_id", "channel", "direction", "status"
        )[:limit]
    )
    for message in stuck:
        _mark_unknown(
            message,
            "the worker stopped during the provider call; waiting for a status callback",
            now=now,
        )
    return {"requeued": len(stale_ids), "unknown": len(stuck)}
