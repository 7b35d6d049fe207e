"""Live membership: a contact that changes (fields, consent, events, erasure, a static
list) is marked after commit and the live task evaluates every dynamic segment for just the
marked contacts, set-based, without duplicating or losing what the full recompute logs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.live import segments_apply_changed
from audiences.models import (
    Segment,
    SegmentDirtyContact,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentSize,
)
from audiences.services import segment_recompute, static_segment_add
from audiences.tasks import apply_changed_contacts
from journeys.services import event_ingest
from messaging.models import Contact
from messaging.privacy import contact_erase
from messaging.services.contacts import contact_update, contact_upsert
from tests.factories import ContactFactory

from .conftest import segment

pytestmark = pytest.mark.django_db

PRO = {"attribute": "plan", "op": "eq", "value": "pro"}


def log(seg: Segment) -> list[tuple[str, str]]:
    return list(
        SegmentMembershipChange.objects.filter(segment=seg)
        .order_by("id")
        .values_list("contact__external_id", "change")
    )


def members(seg: Segment) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment=seg).values_list("contact__external_id", flat=True)
    )


def marked() -> list[int]:
    return sorted(SegmentDirtyContact.objects.values_list("contact_id", flat=True))


def test_contact_upserts_mark_after_commit_and_the_live_task_moves_membership(
    django_capture_on_commit_callbacks,
):
    pros = segment("pros", PRO)
    free = segment("free", {"attribute": "plan", "op": "eq", "value": "free"})
    with django_capture_on_commit_callbacks(execute=True):
        ana, created = contact_upsert(external_id="ana", data={"attributes": {"plan": "pro"}})
    assert created and marked() == [ana.pk]
    assert members(pros) == set()  # not before the live task runs

    # one contact evaluated, one change handed on to journeys
    assert apply_changed_contacts.delay().get() == 2
    assert members(pros) == {"ana"} and members(free) == set()
    assert log(pros) == [("ana", "entered")]
    assert SegmentMembershipChange.objects.get(segment=pros).emitted_at is not None
    assert marked() == []
    assert Segment.objects.get(pk=pros.pk).member_count == 1

    # An upsert that changes nothing marks nothing.
    with django_capture_on_commit_callbacks(execute=True):
        contact_upsert(external_id="ana", data={"attributes": {"plan": "pro"}})
    assert marked() == []

    with django_capture_on_commit_callbacks(execute=True):
        contact_update(contact=ana, data={"attributes": {"plan": "free"}})
    assert segments_apply_changed() == 1
    assert log(pros) == [("ana", "entered"), ("ana", "left")]
    assert log(free) == [("ana", "entered")]
    assert Segment.objects.get(pk=pros.pk).member_count == 0
    # Size over time: this hour's size of each segment that changed.
    assert dict(SegmentSize.objects.values_list("segment__slug", "member_count")) == {
        "pros": 0,
        "free": 1,
    }

    # The full recompute agrees: nothing more to log.
    segment_recompute(segment=pros, now=timezone.now())
    segment_recompute(segment=free, now=timezone.now())
    assert len(log(pros)) == 2 and len(log(free)) == 1


def test_a_rolled_back_change_marks_nothing(django_capture_on_commit_callbacks):
    from django.db import transaction

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        contact_upsert(external_id="gone", data={"attributes": {"plan": "pro"}})
        raise RuntimeError
    assert marked() == []


def test_consent_an_event_and_erasure_move_membership(django_capture_on_commit_callbacks):
    reachable = segment("sms", {"reachable": "sms"})
    buyers = segment("buyers", {"event": "order.completed"})
    cy = ContactFactory(external_id="cy", phone="+6281234567890")
    with django_capture_on_commit_callbacks(execute=True):
        contact_upsert(external_id="cy", data={"consent": {"sms": "subscribed"}})
    segments_apply_changed()
    assert members(reachable) == {"cy"}

    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=cy, properties={"total": 5})
    assert marked() == [cy.pk]
    segments_apply_changed()
    assert members(buyers) == {"cy"}

    with django_capture_on_commit_callbacks(execute=True):
        contact_erase(contact=cy, actor="test")
    segments_apply_changed()
    assert members(reachable) == set() and members(buyers) == set()
    assert list(
        SegmentMembershipChange.objects.filter(segment=buyers).values_list("contact", "change")
    ) == [(cy.pk, "left"), (cy.pk, "entered")]


def test_api_events_applied_by_the_worker_mark_their_contacts(
    api, django_capture_on_commit_callbacks
):
    buyers = segment("buyers", {"event": "order.completed"})
    payload = {"name": "order.completed", "contact": {"external_id": "dee"}, "properties": {}}
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post("/api/v1/events/", payload, format="json").status_code == 202
    dee = Contact.objects.get(external_id="dee")
    assert dee.pk in marked()
    segments_apply_changed()
    assert members(buyers) == {"dee"}


def test_adding_to_a_static_list_updates_segments_that_include_it():
    vip = segment("vip", kind="static")
    reachable_vips = segment("vip-pros", {"all": [{"segment": "vip"}, PRO]})
    a = ContactFactory(external_id="a", attributes={"plan": "pro"})
    ContactFactory(external_id="b", attributes={"plan": "pro"})
    static_segment_add(segment=vip, contacts=Contact.objects.filter(pk=a.pk), now=timezone.now())
    assert marked() == [a.pk]
    segments_apply_changed()
    assert members(reachable_vips) == {"a"}


def test_only_the_marked_contacts_are_looked_at():
    pros = segment("pros", PRO)
    ContactFactory(external_id="unmarked", attributes={"plan": "pro"})
    marked_one = ContactFactory(external_id="marked", attributes={"plan": "pro"})
    SegmentDirtyContact.objects.create(contact_id=marked_one.pk)
    SegmentDirtyContact.objects.create(contact_id=marked_one.pk)  # marked twice: taken once
    assert segments_apply_changed() == 1
    assert members(pros) == {"marked"}
    # the others wait for the full recompute, which logs only them
    segment_recompute(segment=pros, now=timezone.now())
    assert log(pros) == [("marked", "entered"), ("unmarked", "entered")]


def test_a_leave_between_recomputes_is_logged_once():
    pros = segment("pros", PRO)
    ana = ContactFactory(external_id="ana", attributes={"plan": "pro"})
    segment_recompute(segment=pros, now=timezone.now())
    Contact.objects.filter(pk=ana.pk).update(attributes={"plan": "free"})
    SegmentDirtyContact.objects.create(contact_id=ana.pk)
    segments_apply_changed()
    segment_recompute(segment=pros, now=timezone.now())
    SegmentDirtyContact.objects.create(contact_id=ana.pk)
    segments_apply_changed()
    assert log(pros) == [("ana", "entered"), ("ana", "left")]


def _drain_queries(n: int) -> int:
    SegmentDirtyContact.objects.all().delete()
    Contact.objects.all().delete()
    Segment.objects.all().delete()
    segment("pros", PRO)
    segment("reachable", {"reachable": "email"})
    segment("buyers", {"all": [PRO, {"event": "order.completed", "within_days": 30}]})
    for i in range(n):
        contact = ContactFactory(attributes={"plan": "pro" if i % 2 else "free"})
        SegmentDirtyContact.objects.create(contact_id=contact.pk)
    with CaptureQueriesContext(connection) as captured:
        assert segments_apply_changed(batch_size=1000) == n
    assert SegmentMembership.objects.count() > 0
    return len(captured)


def test_the_live_task_is_set_based():
    assert _drain_queries(10) == _drain_queries(150)


def test_batches_drain_the_oldest_marks_first():
    contacts = [ContactFactory(attributes={"plan": "pro"}) for _ in range(5)]
    segment("pros", PRO)
    for contact in contacts:
        SegmentDirtyContact.objects.create(contact_id=contact.pk)
    assert segments_apply_changed(batch_size=2, max_batches=1) == 2
    assert marked() == sorted(c.pk for c in contacts[2:])
    assert segments_apply_changed(batch_size=2) == 3
    assert marked() == []


def test_the_live_task_is_on_the_beat(settings):
    from config.celery import app

    schedule = {e["task"]: e["schedule"] for e in app.conf.beat_schedule.values()}
    assert schedule["audiences.apply_changed_contacts"] == settings.SEGMENT_LIVE_INTERVAL_SECONDS


def test_marking_can_be_switched_off(settings, django_capture_on_commit_callbacks):
    settings.SEGMENT_LIVE_UPDATES = False
    with django_capture_on_commit_callbacks(execute=True):
        contact_upsert(external_id="off", data={"attributes": {"plan": "pro"}})
    assert marked() == []


def test_a_segment_that_cannot_be_evaluated_does_not_hold_the_others(caplog):
    pros = segment("pros", PRO)
    loop_a = segment("loop-a", {"all": []})
    segment("loop-b", {"segment": "loop-a"})
    # A cycle a concurrent edit could make (the services refuse one): it cannot compile.
    Segment.objects.filter(pk=loop_a.pk).update(definition={"segment": "loop-b"})
    ana = ContactFactory(external_id="ana", attributes={"plan": "pro"})
    SegmentDirtyContact.objects.create(contact_id=ana.pk)
    assert segments_apply_changed() == 1
    assert members(pros) == {"ana"}
    assert members(loop_a) == set()
    assert marked() == []
    assert "loop-a could not be evaluated" in caplog.text


def test_a_contact_added_in_the_admin_is_marked(admin_client, django_capture_on_commit_callbacks):
    pros = segment("pros", PRO)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/messaging/contact/add/",
            {
                "external_id": "by-hand",
                "timezone": "UTC",
                "attributes": '{"plan": "pro"}',
                **{
                    f"{prefix}-{name}": "0"
                    for prefix in ("consents", "consent_changes", "enrollments")
                    for name in ("TOTAL_FORMS", "INITIAL_FORMS")
                },
            },
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert marked() == [Contact.objects.get(external_id="by-hand").pk]
    segments_apply_changed()
    assert members(pros) == {"by-hand"}


def test_message_statuses_and_replies_mark_their_contact(django_capture_on_commit_callbacks):
    """messaging publishes these after commit (provider_events, transitions); audiences
    listens without messaging knowing of it."""
    from messaging import signals

    ana, ben = ContactFactory(), ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        signals.message_status_changed.send(
            sender=None,
            message_id=1,
            contact_id=ana.pk,
            channel="sms",
            status="delivered",
            previous_status="sent",
            kind="delivered",
        )
    assert marked() == [ana.pk]
    SegmentDirtyContact.objects.all().delete()
    # The send path's own steps mark nothing (a delivery stays a fixed list of statements).
    with django_capture_on_commit_callbacks(execute=True):
        signals.message_status_changed.send(
            sender=None,
            message_id=1,
            contact_id=ana.pk,
            channel="sms",
            status="sent",
            previous_status="sending",
            kind="sent",
        )
    assert marked() == []
    with django_capture_on_commit_callbacks(execute=True):
        signals.message_received.send(
            sender=None,
            message_id=2,
            contact_id=ben.pk,
            channel="sms",
            in_reply_to_id=None,
            keyword="",
        )
    assert set(marked()) == {ben.pk}
