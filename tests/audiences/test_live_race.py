"""Live updates racing the full recompute and each other, on real connections (threads):
the log for every contact alternates entered/left (no entry logged twice, no exit lost),
membership ends equal to the definition, and every entry starts exactly one enrollment."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from audiences.live import segment_changes_emit, segments_apply_changed
from audiences.models import Segment, SegmentMembership, SegmentMembershipChange
from audiences.services import segment_create, segment_recompute
from journeys.models import Enrollment, Event, Journey, Step
from messaging.models import Contact
from messaging.services.contacts import contact_update
from tests.factories import ContactFactory

CONTACTS = 12
FLIPS = 6


def run_together(*jobs: Callable[[], None]) -> None:
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=30)
            job()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]


@pytest.mark.django_db(transaction=True)
def test_live_updates_the_recompute_and_the_emitters_race_without_duplicates():
    seg = segment_create(
        name="Pros",
        slug="pros",
        kind="dynamic",
        definition={"attribute": "plan", "op": "eq", "value": "pro"},
    )
    journey = Journey.objects.create(
        name="W",
        slug="w",
        status="active",
        trigger_event="segment.entered",
        trigger_filter={"segment": "pros"},
        entry_policy="every_time",
    )
    Step.objects.create(
        journey=journey, position=0, key="p", kind="wait", config={"duration_seconds": 60}
    )
    contacts = [ContactFactory(attributes={"plan": "free"}) for _ in range(CONTACTS)]

    def flipper() -> None:
        for round_ in range(FLIPS):
            for contact in contacts:
                plan = "pro" if (round_ + contact.pk) % 2 else "free"
                contact_update(contact=contact, data={"attributes": {"plan": plan}})

    def drainer() -> None:
        for _ in range(FLIPS * 4):
            segments_apply_changed(batch_size=5)

    def recomputer() -> None:
        for _ in range(FLIPS * 2):
            segment_recompute(segment=Segment.objects.get(pk=seg.pk), now=timezone.now())

    def emitter() -> None:
        for _ in range(FLIPS * 4):
            segment_changes_emit(batch_size=7)

    run_together(flipper, drainer, drainer, recomputer, emitter, emitter)
    segments_apply_changed()
    segment_changes_emit()

    for contact in contacts:
        log = list(
            SegmentMembershipChange.objects.filter(segment=seg, contact=contact)
            .order_by("id")
            .values_list("change", flat=True)
        )
        expected = ["entered", "left"] * len(log)
        assert log == expected[: len(log)], (contact.pk, log)
        member = SegmentMembership.objects.filter(segment=seg, contact=contact).exists()
        is_pro = Contact.objects.get(pk=contact.pk).attributes["plan"] == "pro"
        assert member == is_pro
        assert (log[-1] == "entered" if log else False) == is_pro
    members = SegmentMembership.objects.filter(segment=seg).count()
    assert Segment.objects.get(pk=seg.pk).member_count == members
    entries = SegmentMembershipChange.objects.filter(segment=seg, change="entered").count()
    assert entries >= CONTACTS // 2
    assert Event.objects.filter(name="segment.entered").count() == entries
    assert Enrollment.objects.filter(journey=journey).count() == entries
    assert not SegmentMembershipChange.objects.filter(emitted_at__isnull=True).exists()
