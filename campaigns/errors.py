"""Errors the broadcast services raise; the admin and the API turn them into field errors."""

from __future__ import annotations


class BroadcastError(Exception):
    """A broadcast cannot do what was asked: field-level errors keyed by field name
    ("" for the broadcast as a whole)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(m for ms in errors.values() for m in ms))
        self.errors = errors
