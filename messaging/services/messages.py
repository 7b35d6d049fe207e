"""Creating outbound messages, idempotently, and handing them to delivery."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_app.channels import Channel

from .. import policies
from ..click_buffer import links_cache_on_commit
from ..links import link_destination, links_rewrite
from ..models import Contact, Direction, Message, Template, Topic, TouchpointKind
from ..preferences import preferences_url
from ..rendering import RenderedContent, TemplateRenderError, render_content, render_template
from ..status import MessageStatus
from ..unsubscribe import needs_unsubscribe, unsubscribe_url, with_footer
from .touchpoints import touchpoint_record
from .transitions import message_transition


class MessageRequestError(ValueError):
    """A send request that cannot become a message; `errors` maps field → messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


class IdempotencyConflict(ValueError):
    """The idempotency key was already used for a different request."""


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
    unsubscribe_url: str = "",
    preferences_url: str = "",
) -> RenderedContent:
    links = {"unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
    try:
        if template is None:
            content = render_content(
                contact=contact,
                subject=subject,
                body=body,
                html_body=html_body,
                event=context,
                **links,
            )
        else:
            content = render_template(template, contact=contact, event=context, **links)
    except TemplateRenderError as exc:
        raise MessageRequestError(exc.errors) from exc
    if unsubscribe_url:
        # Marketing email: footer links unless the template placed {{ unsubscribe_url }} and
        # {{ preferences_url }} itself.
        text, html = with_footer(
            body=content.body,
            html_body=content.html_body,
            url=unsubscribe_url,
            preferences_url=preferences_url,
        )
        content = dataclasses.replace(content, body=text, html_body=html)
    return content


# An opt-out instruction already in the body ("Reply STOP to …", "text stop"), not any
# "stop" ("Stop by our store", "non-stop deals").
_OPT_OUT = re.compile(r"\b(?:reply|text|txt|send)\s+[\"'“‘]?stop\b", re.IGNORECASE)


def with_stop_line(body: str) -> str:
    """A marketing SMS body with the opt-out line (settings.SMS_STOP_LINE) unless it is off
    or the body already tells how to stop (an instruction to reply/text STOP, or the line
    itself)."""
    line = settings.SMS_STOP_LINE
    if (
        not line
        or not body.strip()
        or _OPT_OUT.search(body)
        or line.strip().casefold() in body.casefold()
    ):
        return body
    return f"{body.rstrip()}\n{line}"


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
    topic: Topic | None = None,
) -> tuple[Message, bool]:
    """Queue an outbound message (delivered by `deliver_message` after commit).

    Send policies decide first (`decision` when the caller already evaluated them): the
    message is queued, held until a time, or skipped with the reason. Returns (message,
    created); the same idempotency key returns the first message, and with a different
    fingerprint raises IdempotencyConflict. A template that cannot be rendered (an error, a
    limit) raises MessageRequestError, or with `fail_on_render_error` (unattended callers:
    journeys) makes the message `failed` with the reason on its timeline. A `topic` (the
    journey's or broadcast's) is checked by the policies and stored on the message (its
    one-click unsubscribe leaves that topic only). Marketing SMS get the STOP line.
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
    # The id is chosen before rendering: the unsubscribe link of marketing email names it.
    message_id = uuid.uuid4()
    unsubscribe_link = (
        unsubscribe_url(contact_id=contact.pk, channel=channel, message_id=message_id)
        if needs_unsubscribe(channel=channel, category=category)
        else ""
    )
    try:
        content = _render(
            contact=contact,
            template=template,
            body=body,
            subject=subject,
            html_body=html_body,
            context=context or {},
            unsubscribe_url=unsubscribe_link,
            preferences_url=preferences_url(contact_id=contact.pk),
        )
    except MessageRequestError as exc:
        if not fail_on_render_error:
            raise
        render_failure, content = str(exc), RenderedContent()
    if (
        channel == Channel.SMS
        and category == policies.Category.MARKETING
        and not render_failure
        and not content.content_sid
    ):
        # Before the length check: the line counts toward the limit and the segments.
        content = dataclasses.replace(content, body=with_stop_line(content.body))
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
            topic=topic,
        )
    message = Message(
        id=message_id,
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
        topic=topic,
        metadata=metadata or {},
        queued_at=now,
        next_attempt_at=decision.hold_until or now,
    )
    try:
        with transaction.atomic():
            if settings.LINK_TRACKING and not render_failure:
                # After rendering, before storing: the stored body is what is sent. A WhatsApp
                # content template's variables are Meta-approved and stay as they are; its body
                # is what goes out freeform inside the 24-hour window, so it is rewritten.
                message.body, message.html_body, links = links_rewrite(
                    message_id=message.pk, body=message.body, html_body=message.html_body
                )
                # With Redis, the first click already finds its destination in the cache.
                links_cache_on_commit(
                    {
                        link.pk: link_destination(
                            url=link.url,
                            channel=channel,
                            metadata=message.metadata,
                            template_slug=template.slug if template else "",
                        )
                        for link in links
                    }
                )
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
    from ..tasks import deliver_message

    deliver_message.apply_async((str(message_id),), countdown=countdown)
