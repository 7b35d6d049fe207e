"""Broadcast statuses and every allowed transition, in one place (as messaging/status.py is
for messages). Services move a broadcast only along these edges, with a conditional UPDATE,
so a staff action racing the dispatcher (which completes a broadcast) cannot undo it."""

from __future__ import annotations

from .models import Broadcast, BroadcastRecipient

S = Broadcast.Status

TRANSITIONS: dict[str, frozenset[str]] = {
    # launch: scheduled when the first send time is ahead, else sending
    S.DRAFT: frozenset({S.SCHEDULED, S.SENDING}),
    # the dispatcher starts it when a recipient is due; pause; cancel; an audience whose
    # every recipient was skipped at launch is completed at once
    S.SCHEDULED: frozenset({S.SENDING, S.PAUSED, S.CANCELLED, S.COMPLETED}),
    S.SENDING: frozenset({S.PAUSED, S.CANCELLED, S.COMPLETED}),
    # resume: back to scheduled (nothing due yet) or sending
    S.PAUSED: frozenset({S.SCHEDULED, S.SENDING, S.CANCELLED}),
    # final: a cancelled or completed broadcast is never launched (or frozen) again
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Statuses whose recipients the dispatcher claims and sends.
DISPATCHED = frozenset({S.SENDING})
# Launched and not over: recipients may still be sent.
LIVE = frozenset({S.SCHEDULED, S.SENDING, S.PAUSED})
FINAL = frozenset({S.COMPLETED, S.CANCELLED})


def sources_for(target: str) -> frozenset[str]:
    """Statuses a broadcast may be in for a move to `target`."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


# What a staff action does: its name → the statuses it may lead to (the first allowed one is
# chosen by the service). The admin and the API show a button only when `allowed_actions`
# names it; the service checks again.
ACTIONS: dict[str, tuple[str, ...]] = {
    "launch": (S.SCHEDULED, S.SENDING),
    "pause": (S.PAUSED,),
    "resume": (S.SCHEDULED, S.SENDING),
    "cancel": (S.CANCELLED,),
}


def allowed_actions(status: str) -> list[str]:
    """The staff actions a broadcast in `status` accepts (resume only from paused: launch
    and resume lead to the same statuses, from different ones)."""
    allowed = []
    for action, targets in ACTIONS.items():
        if action == "launch" and status != S.DRAFT:
            continue
        if action == "resume" and status != S.PAUSED:
            continue
        if any(can_transition(status, t) for t in targets):
            allowed.append(action)
    return allowed


# --- Recipients -----------------------------------------------------------------------------

RS = BroadcastRecipient.State

# Where a recipient row may move. Frozen at launch as pending, skipped (local time passed),
# control (the held-out group: never sent, never moves) or awaiting_winner (the rest of a
# test-then-winner broadcast: released as pending with the winner's variant, or cancelled /
# skipped with the broadcast).
RECIPIENT_TRANSITIONS: dict[str, frozenset[str]] = {
    RS.PENDING: frozenset({RS.HELD, RS.SENT, RS.SKIPPED, RS.FAILED, RS.CANCELLED}),
    RS.HELD: frozenset({RS.HELD, RS.SENT, RS.SKIPPED, RS.FAILED, RS.CANCELLED}),
    RS.AWAITING_WINNER: frozenset({RS.PENDING, RS.SKIPPED, RS.CANCELLED}),
    RS.CONTROL: frozenset(),
    RS.SENT: frozenset(),
    RS.SKIPPED: frozenset(),
    RS.FAILED: frozenset(),
    RS.CANCELLED: frozenset(),
}
# Claimed and sent by the dispatcher.
SENDABLE = (RS.PENDING, RS.HELD)
# Not sent yet: a cancel cancels them, the end of the send window skips them, and a
# broadcast with any of them left is not completed.
UNSENT = tuple(s for s in RECIPIENT_TRANSITIONS if RS.CANCELLED in RECIPIENT_TRANSITIONS[s])


def recipient_sources_for(target: str) -> tuple[str, ...]:
    """Recipient states a row may be in for a move to `target`."""
    return tuple(s for s, targets in RECIPIENT_TRANSITIONS.items() if target in targets)
