"""Message statuses and every allowed transition, in one place.

Provider callbacks can arrive late, early or twice, so transitions only move forward:
a `sent` after `delivered` is not allowed, and failed/undelivered/skipped are terminal.
A message in `sending` accepts provider outcomes directly because a status callback can
arrive before the worker commits `sent`; `unknown` (a worker died mid-call) is reconciled
by whatever the provider reports later: a status callback, or `messaging.reconcile` asking the
provider (found: its status; never found by the final deadline: `failed`).
"""

from __future__ import annotations

from django.db import models


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"
    UNDELIVERED = "undelivered", "Undelivered"
    SKIPPED = "skipped", "Skipped"
    UNKNOWN = "unknown", "Unknown outcome"
    RECEIVED = "received", "Received"


S = MessageStatus
_PROVIDER_OUTCOMES = {S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED}

TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.SENDING, S.SKIPPED, S.FAILED}),
    S.SENDING: frozenset({S.QUEUED, S.SKIPPED, S.UNKNOWN} | _PROVIDER_OUTCOMES),
    S.UNKNOWN: frozenset(_PROVIDER_OUTCOMES),
    S.SENT: frozenset({S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED}),
    S.DELIVERED: frozenset({S.READ}),
    S.READ: frozenset(),
    S.FAILED: frozenset(),
    S.UNDELIVERED: frozenset(),
    S.SKIPPED: frozenset(),
    S.RECEIVED: frozenset(),
}

# Outcomes after which no send can happen any more (delivered may still become read).
FINAL = frozenset({S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.SKIPPED})

# The timestamp column each status stamps.
TIMESTAMP_FIELD: dict[str, str] = {
    S.QUEUED: "queued_at",
    S.SENDING: "sending_at",
    S.SENT: "sent_at",
    S.DELIVERED: "delivered_at",
    S.READ: "read_at",
    S.FAILED: "failed_at",
    S.UNDELIVERED: "failed_at",
    S.SKIPPED: "skipped_at",
    S.UNKNOWN: "unknown_at",
    S.RECEIVED: "received_at",
}


def sources_for(target: str) -> frozenset[str]:
    """Statuses a message may be in for a move to `target` to be allowed."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())
