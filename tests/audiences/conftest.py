from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audiences.models import Segment
from journeys.models import Event
from messaging.models import Contact

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


def event(contact: Contact, name: str, *, days_ago: float = 1, **properties) -> Event:
    return Event.objects.create(
        contact=contact,
        name=name,
        properties=properties,
        occurred_at=NOW - dt.timedelta(days=days_ago),
        processed_at=timezone.now(),
    )


def segment(slug: str, definition: dict | None = None, kind: str = "dynamic") -> Segment:
    from audiences.services import segment_create

    return segment_create(name=slug.title(), slug=slug, kind=kind, definition=definition)


def message(contact: Contact, status: str = "delivered", *, days_ago: float = 1, **fields):
    """An outbound message as the pipeline leaves it: status and its time stamps."""
    from messaging.models import Message

    when = NOW - dt.timedelta(days=days_ago)
    stamps = {
        "sent": {"sent_at": when},
        "delivered": {"sent_at": when, "delivered_at": when},
        "read": {"sent_at": when, "delivered_at": when, "read_at": when},
        "failed": {"failed_at": when},
        "skipped": {"skipped_at": when},
    }.get(status, {})
    return Message.objects.create(
        direction="outbound",
        channel=fields.pop("channel", "email"),
        contact=contact,
        to_address=fields.pop("to_address", contact.email or contact.phone),
        status=status,
        **{**stamps, **fields},
    )


def journey(slug: str, *steps: tuple[str, str], version: int = 1, status: str = "active"):
    from journeys.models import Journey, Step

    j = Journey.objects.create(
        name=slug.title(), slug=slug, trigger_event="x", status=status, version=version
    )
    for position, (key, kind) in enumerate(steps or [("hello", "send")]):
        Step.objects.create(journey=j, position=position, key=key, kind=kind)
    return j


def enroll(j, contact: Contact, state: str = "waiting", *, days_ago: float = 1, ended=None):
    from journeys.models import Enrollment

    enrollment = Enrollment.objects.create(
        journey=j, contact=contact, entry_policy="every_time", state=state
    )
    # entered_at is auto_now_add: set it afterwards, as time passing would.
    Enrollment.objects.filter(pk=enrollment.pk).update(
        entered_at=NOW - dt.timedelta(days=days_ago),
        ended_at=None if ended is None else NOW - dt.timedelta(days=ended),
    )
    return enrollment
