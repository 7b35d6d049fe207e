"""Hooks audiences publishes, for apps above it (journeys' "enters / leaves segment"
triggers) to react without audiences importing them.

- `segment_membership_changed(changes: list[SegmentChange])`: sent by
  `live.segment_changes_emit` inside its transaction, at least once per logged change (again
  after a crash before its commit). A listener makes its effect idempotent on `change.id`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.dispatch import Signal

segment_membership_changed = Signal()


@dataclass(frozen=True)
class SegmentChange:
    id: int  # the SegmentMembershipChange row
    segment: str  # the segment's slug
    contact_id: int
    change: str  # "entered" or "left"
    at: dt.datetime
