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
