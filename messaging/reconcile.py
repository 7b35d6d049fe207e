"""Settling `unknown` messages by asking the provider.

A message is `unknown` when its provider call was in flight as the worker died or timed out:
the provider may have it. Its status callback (which carries our id) normally settles it. When
none came within UNKNOWN_RECONCILE_AFTER_SECONDS, a beat task asks the provider (the adapter's
`lookup`): found → the provider's status, through the same path as a callback; never found by
UNKNOWN_FINAL_DEADLINE_SECONDS → `failed`, "not accepted by provider" (a normal failure: the
journey's fallback applies; the message itself is never sent again). Every settlement is a
`reconciled` touchpoint.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app.events import TrackingEvent
from channels_app.providers.base import LookupResult, ProviderError, SentMessageQuery
from channels_app.providers.registry import get_provider

from .models import Direction, Message, TouchpointKind
from .provider_events import tracking_events_apply
from .services import message_transition, touchpoint_record
from .status import MessageStatus

logger = logging.getLogger(__name__)

NOT_ACCEPTED = "not accepted by provider"
# Other messages' provider ids to the same address sent this close to ours can't be ours.
_NEIGHBOURS = timedelta(hours=1)
# The first key of the advisory locks taken on provider message ids ("TLpm").
_ADVISORY_LOCK_CLASS = 0x544C706D


def unknown_messages_reconcile(
    *, now: datetime | None = None, limit: int = 100, has_time: Any = None
) -> dict[str, int]:
    """Claim due `unknown` messages (SKIP LOCKED, so two beats never take the same one) and
    settle each from the provider's answer. `has_time()` False stops early: the claims not
    reached are released for the next run."""
    now = now or timezone.now()
    claimed = _claim_due(now=now, limit=limit)
    counts: Counter[str] = Counter()
    for index, message in enumerate(claimed):
        if has_time is not None and not has_time():
            Message.objects.filter(
                pk__in=[m.pk for m in claimed[index:]], status=MessageStatus.UNKNOWN
            ).update(next_attempt_at=now)
            counts["released"] += len(claimed) - index
            break
        counts[message_reconcile(message=message, now=now)] += 1
    return dict(counts)


def _claim_due(*, now: datetime, limit: int) -> list[Message]:
    lease = now + timedelta(seconds=settings.UNKNOWN_RECONCILE_AFTER_SECONDS)
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
            .filter(status=MessageStatus.UNKNOWN, direction=Direction.OUTBOUND)
            .order_by("next_attempt_at")[:limit]
        )
        if rows:
            # The claim: the next run leaves them alone until this lookup is long over.
            Message.objects.filter(pk__in=[m.pk for m in rows]).update(next_attempt_at=lease)
    return rows


def message_reconcile(*, message: Message, now: datetime) -> str:
    """Ask the provider about one `unknown` message and settle it if the answer allows.
    Returns what happened: settled, not_accepted, waiting, lookup_failed, already_settled."""
    since = message.unknown_at or message.sending_at or message.updated_at
    final = since + timedelta(seconds=settings.UNKNOWN_FINAL_DEADLINE_SECONDS)
    provider = get_provider(message.channel)
    sent_after = message.sending_at or message.created_at
    query = SentMessageQuery(
        message_id=str(message.pk),
        channel=message.channel,
        to=message.to_address,
        # With a template the provider rendered the text: we can't match on it.
        body="" if message.content_sid else message.body,
        sent_after=sent_after,
        sent_before=since,
        provider_message_id=message.provider_message_id,
    )
    others = frozenset(
        Message.objects.filter(
            channel=message.channel,
            to_address=message.to_address,
            sending_at__gte=sent_after - _NEIGHBOURS,
        )
        .exclude(pk=message.pk)
        .exclude(provider_message_id="")
        .values_list("provider_message_id", flat=True)
    )
    try:
        result = provider.lookup(query, exclude=others)
    except ProviderError as exc:
        # We could not ask: that says nothing about the message. Try again next time.
        logger.warning("Could not look up unknown message %s: %r", message.pk, exc)
        return "lookup_failed"
    if result is not None and result.found:
        settled = _settle_found(message, result, provider.name, now)
        if settled != "taken":
            return settled
        # Another message got this provider message while we were asking: not ours after
        # all. Ask again at the next check, which excludes it.
        result = LookupResult(found=False, matched_by=result.matched_by)
    if now >= final:
        return _settle_not_accepted(message, result, now)
    # Not there (yet), or the provider can't be asked: ask again later, at the latest at the
    # final deadline; the first miss is noted on the timeline.
    recheck = min(now + timedelta(seconds=settings.UNKNOWN_RECONCILE_AFTER_SECONDS), final)
    Message.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN).update(
        next_attempt_at=recheck
    )
    touchpoint_record(
        contact_id=message.contact_id,
        kind=TouchpointKind.RECONCILED,
        channel=message.channel,
        message_id=message.pk,
        occurred_at=now,
        data={
            "outcome": "not_found_yet" if result is not None else "cannot_look_up",
            "lookup": result.matched_by if result is not None else "",
            "final_deadline": final.isoformat(),
        },
        dedupe_key=f"msg:{message.pk}:reconcile-waiting",
    )
    return "waiting"


def _provider_id_taken(message: Message, provider_message_id: str) -> bool:
    """Whether another outbound message already holds this provider message id. Called in
    the settling transaction: on PostgreSQL a transaction-scoped advisory lock on the id makes
    two reconciliations of the same provider message take turns, so the second sees the
    first's commit (SQLite serializes writers anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))",
                [_ADVISORY_LOCK_CLASS, f"{message.channel}:{provider_message_id}"],
            )
    return (
        Message.objects.filter(
            direction=Direction.OUTBOUND, provider_message_id=provider_message_id
        )
        .exclude(pk=message.pk)
        .exists()
    )


def _locked_unknown(message: Message) -> Message | None:
    """The message, row-locked, if it is still `unknown` (a callback may have won)."""
    return (
        Message.objects.select_for_update(of=("self",))
        .select_related("contact")
        .filter(pk=message.pk, status=MessageStatus.UNKNOWN)
        .first()
    )


def _settle_found(message: Message, result: LookupResult, provider: str, now: datetime) -> str:
    with transaction.atomic():
        locked = _locked_unknown(message)
        if locked is None:
            return "already_settled"
        if _provider_id_taken(locked, result.provider_message_id):
            logger.warning(
                "Unknown message %s matched provider message %s, which another message holds",
                locked.pk,
                result.provider_message_id,
            )
            return "taken"
        # The same path as a status callback: forward-only transitions, failure consequences
        # (opt-outs, dead numbers), the status touchpoint and the journeys' signal.
        event = TrackingEvent(
            event_type=result.status,
            provider=provider,
            channel=locked.channel,
            timestamp=now,
            event_id=f"reconcile:{result.provider_message_id}:{result.provider_status}",
            provider_message_id=result.provider_message_id,
            message_id=str(locked.pk),
            recipient=locked.to_address,
            reason=f"provider reports {result.provider_status}",
            error_code=result.error_code,
            provider_status=result.provider_status,
            raw=result.raw,
        )
        tracking_events_apply(events=[event])
        _reconciled_touchpoint(
            locked,
            now,
            outcome=result.status,
            lookup=result.matched_by,
            provider_status=result.provider_status,
            provider_message_id=result.provider_message_id,
            candidates=result.candidates,
        )
    return "settled"


def _settle_not_accepted(message: Message, result: LookupResult | None, now: datetime) -> str:
    lookup = result.matched_by if result is not None else ""
    detail = (
        "the provider has no such message"
        if result is not None
        else "the provider's API can't be asked and no webhook reported it"
    )
    with transaction.atomic():
        locked = _locked_unknown(message)
        if locked is None:
            return "already_settled"
        message_transition(
            message=locked,
            to=MessageStatus.FAILED,
            occurred_at=now,
            fields={
                "error_code": "not_accepted",
                "error_message": f"{NOT_ACCEPTED}: {detail} by the final deadline",
                "next_attempt_at": None,
            },
            touchpoint_data={"reason": NOT_ACCEPTED, "code": "not_accepted", "reconciled": True},
        )
        _reconciled_touchpoint(locked, now, outcome="not_accepted", lookup=lookup)
    return "not_accepted"


def _reconciled_touchpoint(message: Message, now: datetime, **data: Any) -> None:
    touchpoint_record(
        contact_id=message.contact_id,
        kind=TouchpointKind.RECONCILED,
        channel=message.channel,
        message_id=message.pk,
        occurred_at=now,
        data=data,
        dedupe_key=f"msg:{message.pk}:reconciled",
    )
