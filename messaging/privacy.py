"""Data-subject rights (GDPR articles 15 and 17): export everything stored about a contact,
and erase their personal data while keeping anonymised rows so statistics stay correct.

Dependencies point one way (journeys → messaging → channels_app): journeys' and outbound's
rows are reached with `apps.get_model` at call time, never imported, and skipped when the
app is not installed.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import uuid
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from channels_app.models import WebhookEvent

from .click_buffer import links_cache_on_commit
from .models import (
    Consent,
    ConsentChange,
    Contact,
    Conversation,
    Direction,
    Message,
    TopicSubscription,
    Touchpoint,
    TrackedLink,
)
from .services import touchpoint_record
from .services.contacts import contacts_changed_announce

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
ERASED_KIND = "contact_erased"
ERASED_REASON = "contact's personal data was erased"

# Touchpoint `data` keys that never hold personal data: ids, statuses, codes, counters, the
# names of journeys/steps/templates/events. Everything else (reply bodies, survey answers,
# clicked URLs, provider reasons that quote the address, event properties, consent notes)
# is dropped on erasure. A whitelist, so a key added later is erased until proven harmless.
TOUCHPOINT_SAFE_KEYS = frozenset(
    {
        "actor",
        "attachments",
        "attempt",
        "category",
        "channel",
        "choice",  # one of the survey step's configured choices, not free text
        "code",
        "enrollment",
        "event",  # journey_entered: the trigger event's name
        "event_id",
        "in_reply_to",
        "inbound_message_id",
        "journey",
        "journey_name",
        "keyword",  # stop/start/help, as classified
        "matched_by",
        "name",  # event touchpoints: the event's name
        "outcome",
        "previous_status",
        "provider_event_id",
        "provider_message_id",
        "provider_status",
        "provider_timestamp",
        "retry_in_seconds",
        "score",
        "skipped",  # fell_back: the channels tried
        "source",
        "status",
        "step",
        "template",
        "until",
        "version",
    }
)

# Erased columns and their blank values, per model.
_MESSAGE_BLANKS: dict[str, Any] = {
    "to_address": "",
    "from_address": "",
    "subject": "",
    "body": "",
    "html_body": "",
    "content_variables": {},
    "media": [],
    "metadata": {},
    # Provider error texts quote the recipient ("The 'To' number +1… is not valid"); the
    # error code stays for statistics.
    "error_message": "",
    # A hash of the request, which held the addresses and the body.
    "request_fingerprint": "",
}
_CONTACT_BLANKS: dict[str, Any] = {
    "external_id": None,
    "email": "",
    "phone": "",
    "whatsapp": "",
    "first_name": "",
    "last_name": "",
    "locale": "",
    "attributes": {},
    "timezone": "UTC",
    "last_inbound_whatsapp_at": None,
}
# Webhook payloads received before the contact row existed cannot concern it; an inbound
# message that creates its contact is stored a moment before it, hence the margin.
_WEBHOOK_MARGIN = dt.timedelta(days=1)


# --- Small helpers --------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`, as the API writes times."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A column value as JSON can hold it (for rows exported field by field)."""
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _row(instance: models.Model) -> dict[str, Any]:
    """Every concrete column of a row (foreign keys as ids)."""
    return {f.attname: _plain(getattr(instance, f.attname)) for f in instance._meta.concrete_fields}


def _model(app_label: str, name: str) -> type[models.Model] | None:
    """Another app's model, looked up at call time; None when that app is not installed."""
    if not apps.is_installed(app_label):
        return None
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def _phone_needle(number: str) -> str:
    # Digits only: providers and forms write a number as +1…, whatsapp:+1… or %2B1….
    return "".join(ch for ch in number if ch.isdigit())


def _personal_needles(contact: Contact) -> list[str]:
    """Strings that identify the contact inside raw provider payloads: every address it
    has now or messages were exchanged with. Our own sender addresses are not among them
    (outbound `from` and inbound `to` are ours)."""
    pairs = (
        Message.objects.filter(contact=contact)
        .values_list("direction", "to_address", "from_address")
        .order_by()  # the default ordering would defeat DISTINCT
        .distinct()
    )
    emails = {contact.email}
    phones = {contact.phone, contact.whatsapp}
    for direction, to_address, from_address in pairs:
        theirs = to_address if direction == Direction.OUTBOUND else from_address
        (emails if "@" in theirs else phones).add(theirs)
    needles = {e.strip().lower() for e in emails if e and e.strip()}
    # Under 7 digits is a short code or noise, not a person's number.
    needles |= {n for n in map(_phone_needle, phones) if len(n) >= 7}
    return sorted(needles)


def _webhook_events(contact: Contact, needles: list[str]) -> models.QuerySet[WebhookEvent]:
    """Verified provider callbacks that concern the contact: the payload mentions one of its
    addresses, or the row is one of its inbound messages (event id = MessageSid/Message-ID).

    A full scan of the recent rows (LIKE cannot use an index), bounded by the contact's age;
    erasure and export are rare, and the needles are a handful of addresses.
    """
    inbound_ids = Message.objects.filter(
        contact=contact, direction=Direction.INBOUND, provider_message_id__gt=""
    ).values("provider_message_id")
    match = Q(event_id__in=inbound_ids)
    for needle in needles:
        match |= Q(payload_text__icontains=needle)
    return (
        WebhookEvent.objects.filter(received_at__gte=contact.created_at - _WEBHOOK_MARGIN)
        .alias(payload_text=Cast("payload", TextField()))
        .filter(match)
    )


def _outbound_deliveries(contact: Contact) -> models.QuerySet | None:
    """Outbound webhook deliveries about the contact (every payload names it in
    `data.contact.id`), or None without the outbound app."""
    delivery = _model("outbound", "WebhookDelivery")
    if delivery is None:
        return None
    return delivery._default_manager.filter(
        created_at__gte=contact.created_at - _WEBHOOK_MARGIN, payload__data__contact__id=contact.pk
    )


# --- Export ---------------------------------------------------------------------------


def _message_out(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.pk),
        "direction": m.direction,
        "channel": m.channel,
        "status": m.status,
        "template": m.template.slug if m.template else None,
        "to_address": m.to_address,
        "from_address": m.from_address,
        "subject": m.subject,
        "body": m.body,
        "html_body": m.html_body,
        "content_sid": m.content_sid,
        "content_variables": m.content_variables,
        "media": m.media,
        "provider": m.provider,
        "provider_message_id": m.provider_message_id,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "attempts": m.attempts,
        "source": m.source,
        "category": m.category,
        "in_reply_to": str(m.in_reply_to_id) if m.in_reply_to_id else None,
        "metadata": m.metadata,
        # Tracked links: the original URLs the short links in the body stand for.
        "links": [
            {"id": link.pk, "position": link.position, "url": link.url}
            for link in sorted(m.tracked_links.all(), key=lambda link: link.position)
        ],
        **{
            name: _iso(getattr(m, name))
            for name in (
                "created_at",
                "updated_at",
                "queued_at",
                "sending_at",
                "sent_at",
                "delivered_at",
                "read_at",
                "failed_at",
                "skipped_at",
                "received_at",
            )
        },
    }


def _journeys_export(contact: Contact) -> dict[str, list[dict[str, Any]]]:
    event, enrollment, survey = (
        _model("journeys", name) for name in ("Event", "Enrollment", "SurveyResponse")
    )
    if event is None or enrollment is None or survey is None:
        return {"events": [], "enrollments": [], "survey_responses": []}
    return {
        "events": [
            {
                "id": e.pk,
                "name": e.name,
                "properties": e.properties,
                "source": e.source,
                "occurred_at": _iso(e.occurred_at),
                "received_at": _iso(e.received_at),
            }
            for e in event._default_manager.filter(contact=contact).order_by("occurred_at", "pk")
        ],
        "enrollments": [
            {
                "id": r.pk,
                "journey": r.journey.slug,
                "journey_name": r.journey.name,
                "journey_version": r.journey_version,
                "state": r.state,
                "current_step": r.current_step.key if r.current_step else None,
                "waiting_for": r.waiting_for,
                "context": r.context,
                "exit_reason": r.exit_reason,
                "entered_at": _iso(r.entered_at),
                "updated_at": _iso(r.updated_at),
                "next_run_at": _iso(r.next_run_at),
                "ended_at": _iso(r.ended_at),
            }
            for r in enrollment._default_manager.filter(contact=contact)
            .select_related("journey", "current_step")
            .order_by("entered_at", "pk")
        ],
        "survey_responses": [
            {
                "id": s.pk,
                "journey": s.journey.slug,
                "step": s.step.key,
                "status": s.status,
                "score": s.score,
                "choice": s.choice,
                "nps_category": s.nps_category,
                "raw_answer": s.raw_answer,
                "attempts": s.attempts,
                "question_message": str(s.question_id) if s.question_id else None,
                "answer_message": str(s.answer_id) if s.answer_id else None,
                "answered_at": _iso(s.answered_at),
            }
            for s in survey._default_manager.filter(contact=contact)
            .select_related("journey", "step")
            .order_by("answered_at", "pk")
        ],
    }


def contact_export(*, contact: Contact) -> dict[str, Any]:
    """Everything stored about a contact, JSON-serialisable, in a fixed number of queries."""
    needles = _personal_needles(contact)
    conversation = Conversation.objects.filter(contact=contact).first()
    deliveries = _outbound_deliveries(contact)
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "exported_at": _iso(timezone.now()),
        "profile": {
            "id": contact.pk,
            "external_id": contact.external_id,
            "email": contact.email,
            "phone": contact.phone,
            "whatsapp": contact.whatsapp,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "locale": contact.locale,
            "timezone": contact.timezone,
            "preferred_channel": contact.preferred_channel,
            "attributes": contact.attributes,
            "created_via": contact.created_via,
            "email_undeliverable": contact.email_undeliverable,
            "phone_invalid": contact.phone_invalid,
            "last_inbound_whatsapp_at": _iso(contact.last_inbound_whatsapp_at),
            "erased_at": _iso(contact.erased_at),
            "created_at": _iso(contact.created_at),
            "updated_at": _iso(contact.updated_at),
        },
        "consent": {
            c.channel: {"status": c.status, "source": c.source, "changed_at": _iso(c.changed_at)}
            for c in Consent.objects.filter(contact=contact).order_by("channel")
        },
        "topic_subscriptions": {
            t.topic.slug: {"status": t.status, "source": t.source, "changed_at": _iso(t.changed_at)}
            for t in TopicSubscription.objects.filter(contact=contact)
            .select_related("topic")
            .order_by("topic__slug")
        },
        "consent_history": [
            {
                "channel": c.channel,
                "topic": c.topic.slug if c.topic else None,
                "status": c.status,
                "previous_status": c.previous_status,
                "source": c.source,
                "note": c.note,
                "message": str(c.message_id) if c.message_id else None,
                "changed_at": _iso(c.changed_at),
            }
            for c in ConsentChange.objects.filter(contact=contact)
            .select_related("topic")
            .order_by("changed_at", "pk")
        ],
        "messages": [
            _message_out(m)
            for m in Message.objects.filter(contact=contact)
            .select_related("template")
            .prefetch_related("tracked_links")
            .order_by("created_at", "pk")
        ],
        "touchpoints": [
            {
                "kind": t.kind,
                "channel": t.channel,
                "direction": t.direction,
                "occurred_at": _iso(t.occurred_at),
                "message": str(t.message_id) if t.message_id else None,
                "data": t.data,
            }
            for t in Touchpoint.objects.filter(contact=contact).order_by("occurred_at", "pk")
        ],
        **_journeys_export(contact),
        "conversation": None
        if conversation is None
        else {
            "status": conversation.status,
            "last_inbound_message": str(conversation.last_inbound_id)
            if conversation.last_inbound_id
            else None,
            "last_inbound_at": _iso(conversation.last_inbound_at),
            "opened_at": _iso(conversation.opened_at),
            "resolved_at": _iso(conversation.resolved_at),
        },
        "provider_webhooks": [
            {
                "provider": w.provider,
                "kind": w.kind,
                "event_id": w.event_id,
                "received_at": _iso(w.received_at),
                "payload": w.payload,
            }
            for w in _webhook_events(contact, needles).order_by("received_at", "pk")
        ],
        "webhook_deliveries": []
        if deliveries is None
        else [_row(d) for d in deliveries.order_by("created_at", "pk")],
    }


# --- Erasure --------------------------------------------------------------------------


def _not_blank(blanks: dict[str, Any]) -> Q:
    """Rows where at least one of these columns still holds something."""
    return ~Q(**blanks)


def _scrub_touchpoints(contact: Contact) -> int:
    """Keep only the whitelisted keys of each touchpoint's data; returns rows changed."""
    changed: list[Touchpoint] = []
    rows = Touchpoint.objects.filter(contact=contact).values_list("pk", "data")
    for pk, data in rows.iterator(chunk_size=2000):
        if not isinstance(data, dict):
            changed.append(Touchpoint(pk=pk, data={}))
            continue
        kept = {k: v for k, v in data.items() if k in TOUCHPOINT_SAFE_KEYS}
        if kept != data:
            changed.append(Touchpoint(pk=pk, data=kept))
    # Touchpoints are append-only (save() and delete() raise); anonymising them in place is
    # the one sanctioned change, and bulk_update is a QuerySet.update() that skips save().
    Touchpoint.objects.bulk_update(changed, ["data"], batch_size=500)
    return len(changed)


def _erase_journeys(contact: Contact, now: dt.datetime) -> dict[str, int]:
    event, enrollment, survey = (
        _model("journeys", name) for name in ("Event", "Enrollment", "SurveyResponse")
    )
    if event is None or enrollment is None or survey is None:
        return {}
    enrollments = enrollment._default_manager.filter(contact=contact)
    # A live enrollment could not run on without its context, and an erased contact must not
    # be messaged: it ends as exited (finished ones keep their state for the statistics).
    live = list(
        enrollments.filter(state__in=enrollment.LIVE_STATES).values_list("pk", "journey__slug")
    )
    if live:
        enrollments.filter(pk__in=[pk for pk, _ in live]).update(
            state=enrollment.State.EXITED,
            exit_reason=ERASED_REASON,
            ended_at=now,
            next_run_at=None,
            waiting_for="",
            wait_until=None,
            updated_at=now,
        )
    for pk, slug in live:
        touchpoint_record(
            contact_id=contact.pk,
            kind="journey_exited",
            occurred_at=now,
            data={"journey": slug, "enrollment": pk, "code": "erased"},
            dedupe_key=f"enr:{pk}:journey_exited",
        )
    event_blanks = {"properties": {}, "request_fingerprint": ""}
    return {
        "events": event._default_manager.filter(contact=contact)
        .filter(_not_blank(event_blanks))
        .update(**event_blanks),
        "enrollments": enrollments.exclude(context={}).update(context={}),
        "enrollments_exited": len(live),
        "survey_responses": survey._default_manager.filter(contact=contact)
        .exclude(raw_answer="")
        .update(raw_answer=""),
    }


def _erase_outbound(contact: Contact, now: dt.datetime) -> dict[str, int]:
    """Empty the payloads of webhook deliveries about the contact (message bodies, addresses,
    answers) and the receivers' responses, which may echo them."""
    deliveries = _outbound_deliveries(contact)
    if deliveries is None:
        return {}
    delivery = deliveries.model
    # An emptied payload must not be sent: pending ones stop, as when a subscription is
    # disabled.
    stopped = deliveries.filter(status=delivery.Status.PENDING).update(
        status=delivery.Status.FAILED, finished_at=now, next_attempt_at=None
    )
    attempt = _model("outbound", "WebhookAttempt")
    attempts = 0
    if attempt is not None:
        attempts = (
            attempt._default_manager.filter(delivery__in=deliveries.values("pk"))
            .exclude(response_body="")
            .update(response_body="")
        )
    return {
        "webhook_deliveries": deliveries.update(payload={}),
        "webhook_deliveries_stopped": stopped,
        "webhook_attempts": attempts,
    }


def _erase_admin_log(contact: Contact) -> int:
    """Admin history names the contact in `object_repr` (its name or address)."""
    if not apps.is_installed("django.contrib.admin"):
        return 0
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    return (
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Contact), object_id=str(contact.pk)
        )
        .exclude(object_repr=f"#{contact.pk}")
        .update(object_repr=f"#{contact.pk}")
    )


def contact_erase(*, contact: Contact, actor: str = "api") -> dict[str, int]:
    """Erase a contact's personal data in one transaction and return the rows changed per
    table. Rows stay, anonymised (statuses, channels, times, provider ids, links), so journey
    statistics are unchanged; the contact can never be messaged again. Repeating it is safe."""
    now = timezone.now()
    with transaction.atomic():
        # Serialises with upserts and sends that lock the contact.
        locked = Contact.objects.select_for_update().get(pk=contact.pk)
        needles = _personal_needles(locked)
        counts: dict[str, int] = {}
        # Raw payloads first: finding them needs the addresses and ids erased below. The rows
        # stay (with an empty payload) as the dedupe gate against provider retries.
        counts["webhook_events"] = (
            _webhook_events(locked, needles).exclude(payload={}).update(payload={})
        )
        counts.update(_erase_outbound(locked, now))
        messages = Message.objects.filter(contact=locked)
        counts["messages"] = messages.filter(_not_blank(_MESSAGE_BLANKS)).update(
            **_MESSAGE_BLANKS, updated_at=now
        )
        # A tracked link's URL can carry personal data (?email=…); an erased one is a 404.
        erased_links = TrackedLink.objects.filter(message__contact=locked).exclude(url="")
        # Their cached destinations go too (with Redis), once the erasure commits.
        links_cache_on_commit(dict.fromkeys(erased_links.values_list("pk", flat=True), ""))
        counts["tracked_links"] = erased_links.update(url="")
        counts["touchpoints"] = _scrub_touchpoints(locked)
        counts["consent_changes"] = (
            ConsentChange.objects.filter(contact=locked).exclude(note="").update(note="")
        )
        # The contact's topic choices go (the ledger keeps that they were made); an erased
        # contact is never messaged, so there is nothing left for them to decide.
        counts["topic_subscriptions"] = TopicSubscription.objects.filter(contact=locked).delete()[0]
        counts.update(_erase_journeys(locked, now))
        counts["admin_log_entries"] = _erase_admin_log(locked)
        changed = [k for k, v in _CONTACT_BLANKS.items() if getattr(locked, k) != v]
        for name in changed:
            setattr(locked, name, _CONTACT_BLANKS[name])
        if locked.erased_at is None:
            locked.erased_at = now
            changed.append("erased_at")
        counts["contacts"] = int(bool(changed))
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
        # An erased contact leaves every segment now, not at the next recompute.
        contacts_changed_announce([locked.pk])
        touchpoint_record(
            contact_id=locked.pk,
            kind=ERASED_KIND,
            occurred_at=locked.erased_at,
            data={"actor": actor},
            dedupe_key=f"erased:{locked.pk}",
        )
    contact.refresh_from_db()
    logger.info("Contact %s erased by %s: %s", contact.pk, actor, counts)
    return counts
