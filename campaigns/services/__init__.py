"""Broadcast services: the only writers of broadcasts and their recipients.

- lifecycle: launch (validate, freeze the audience, schedule), pause, resume, cancel
- freeze: the audience → recipient rows, in one INSERT … SELECT
- dispatch: the beat tick: start, claim (throttled, SKIP LOCKED), end windows, complete
- sending: send claimed recipients through the journeys' policy and message path
- split / experiments / winner: variants, holdout and test-then-winner (assigned by the
  freeze, validated for drafts and the launch, the winner chosen and released by a beat task)

Tasks import services, never the reverse.
"""

from .dispatch import (
    WINDOW_ENDED,
    Claim,
    broadcast_end_window,
    broadcasts_complete,
    broadcasts_dispatch,
    recipients_claim,
    run_due,
    throttle_grant,
)
from .freeze import LOCAL_TIME_PASSED, audience_queryset, local_instant, recipients_freeze
from .lifecycle import (
    CANCELLED_REASON,
    broadcast_cancel,
    broadcast_launch,
    broadcast_pause,
    broadcast_resume,
    broadcasts_start_due,
    channel_order_errors,
    launch_errors,
)
from .sending import channel_order, idempotency_key, recipients_send
from .winner import broadcast_choose_winner, broadcasts_choose_winners

__all__ = [
    "CANCELLED_REASON",
    "LOCAL_TIME_PASSED",
    "WINDOW_ENDED",
    "Claim",
    "audience_queryset",
    "broadcast_cancel",
    "broadcast_choose_winner",
    "broadcast_end_window",
    "broadcast_launch",
    "broadcast_pause",
    "broadcast_resume",
    "broadcasts_choose_winners",
    "broadcasts_complete",
    "broadcasts_dispatch",
    "broadcasts_start_due",
    "channel_order",
    "channel_order_errors",
    "idempotency_key",
    "launch_errors",
    "local_instant",
    "recipients_claim",
    "recipients_freeze",
    "recipients_send",
    "run_due",
    "throttle_grant",
]
