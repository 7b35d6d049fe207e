"""The dates a report, map or experiment query may name: from EARLIEST to a year ahead.

A well-formed date far out (9999-12-31, 0001-01-01) would overflow the date arithmetic
(a day added to the end, a default start some days before it): it is a field error, not a
500. Every date-range form and parameter in insights checks its dates here first."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

EARLIEST = dt.date(2000, 1, 1)
AHEAD_DAYS = 366


def date_problem(value: dt.date | None) -> str | None:
    """Why `value` cannot be used ("" → None when it is fine or absent)."""
    if value is None:
        return None
    latest = timezone.now().astimezone(dt.UTC).date() + dt.timedelta(days=AHEAD_DAYS)
    if EARLIEST <= value <= latest:
        return None
    return f"Choose a date between {EARLIEST.isoformat()} and {latest.isoformat()}."
