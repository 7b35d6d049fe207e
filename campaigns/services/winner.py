"""Test then winner: when `winner_due_at` has passed, the variant with the best rate of the
broadcast's metric over the test group wins (ties: the first variant) and every recipient
awaiting the winner is released as pending with the winner's variant, at its own send time
or now, whichever is later. Choosing, recording
and releasing are one transaction under the broadcast's row lock, so a crash in between
leaves everything as it was (chosen again on the next tick) and a second run finds the
winner recorded and nobody awaiting: nobody is released, or sent, twice."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from audit.services import audit_record, audit_snapshot

from ..experiment_report import variant_counts, winner_of
from ..models import Broadcast, BroadcastRecipient
from ..status import LIVE
from .split import variant_keys

R = BroadcastRecipient.State


def winners_due(now: dt.datetime):
    return Broadcast.objects.filter(status__in=LIVE, winner_variant="", winner_due_at__lte=now)


def broadcast_choose_winner(*, broadcast: Broadcast, now: dt.datetime | None = None) -> str:
    """Choose and release, once; "" when not due (or already chosen, or being chosen)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            winners_due(now).select_for_update(skip_locked=True).filter(pk=broadcast.pk).first()
        )
        if locked is None:
            return ""
        keys = variant_keys(locked)
        counts = variant_counts(locked)
        winner = winner_of(counts, keys, locked.winner_metric)
        released = BroadcastRecipient.objects.filter(
            broadcast=locked, state=R.AWAITING_WINNER
        ).update(
            state=R.PENDING,
            variant=winner,
            # never before the recipient's own send time (a throttle or a local send time)
            send_after=Greatest(F("send_after"), Value(now)),
            updated_at=now,
        )
        before = audit_snapshot(locked)
        locked.winner_variant, locked.winner_chosen_at = winner, now
        locked.save(update_fields=["winner_variant", "winner_chosen_at", "updated_at"])
        metric = locked.winner_metric
        audit_record(
            actor=None,  # the beat task: a system entry, no touchpoints
            action="choose_winner",
            target=locked,
            before=before,
            after=audit_snapshot(locked),
            details={
                "winner": winner,
                "metric": metric,
                "released": released,
                "test": {
                    k: {
                        "recipients": counts.get(k, {}).get("recipients", 0),
                        metric: counts.get(k, {}).get(metric, 0),
                    }
                    for k in keys
                },
            },
        )
    broadcast.winner_variant, broadcast.winner_chosen_at = winner, now
    return winner


def broadcasts_choose_winners(*, now: dt.datetime | None = None) -> int:
    """The beat task's work: every live broadcast whose winner is due. Returns how many."""
    now = now or timezone.now()
    chosen = 0
    for broadcast in winners_due(now).only("pk"):
        if broadcast_choose_winner(broadcast=broadcast, now=now):
            chosen += 1
    return chosen
