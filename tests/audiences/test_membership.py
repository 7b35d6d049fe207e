"""Recompute: set-based, entered/left history, a query count that does not grow with the
number of contacts; static segments; the beat task."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.db.models import Count
from django.utils import timezone

from audiences.models import Segment, SegmentMembership, SegmentMembershipChange
from audiences.services import segment_count, segment_recompute, static_segment_add
from audiences.tasks import recompute_segments
from audit.models import AuditEntry
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Contact
from tests.factories import ContactFactory

from .conftest import NOW, event, segment

pytestmark = pytest.mark.django_db

BUYERS = {
    "all": [
        {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
        {"event": "order.completed", "within_days": 30},
        {"not": {"field": "timezone", "op": "eq", "value": "UTC"}},
    ]
}


def changes(seg: Segment) -> list[tuple[str, str]]:
    return sorted(
        SegmentMembershipChange.objects.filter(segment=seg).values_list(
            "contact__external_id", "change"
        )
    )


def members(seg: Segment) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment=seg).values_list("contact__external_id", flat=True)
    )


def test_recompute_records_who_entered_and_left():
    ana = ContactFactory(external_id="ana", attributes={"plan": "pro"})
    ben = ContactFactory(external_id="ben", attributes={"plan": "team"})
    ContactFactory(external_id="cy", attributes={"plan": "free"})
    event(ana, "order.completed", days_ago=2)
    event(ben, "order.completed", days_ago=2)
    seg = segment("buyers", BUYERS)

    seg = segment_recompute(segment=seg, now=NOW)
    assert members(seg) == {"ana", "ben"}
    assert changes(seg) == [("ana", "entered"), ("ben", "entered")]
    assert (seg.member_count, seg.last_computed_at) == (2, NOW)

    # nothing changed: nothing logged
    segment_recompute(segment=seg, now=NOW + dt.timedelta(minutes=5))
    assert len(changes(seg)) == 2

    later = NOW + dt.timedelta(hours=1)
    Contact.objects.filter(pk=ben.pk).update(attributes={"plan": "free"})
    Contact.objects.filter(external_id="cy").update(attributes={"plan": "pro"})
    event(Contact.objects.get(external_id="cy"), "order.completed", days_ago=0)
    seg = segment_recompute(segment=seg, now=later)
    assert members(seg) == {"ana", "cy"}
    assert changes(seg) == [
        ("ana", "entered"),
        ("ben", "entered"),
        ("ben", "left"),
        ("cy", "entered"),
    ]
    left = SegmentMembershipChange.objects.get(contact=ben, change="left")
    assert left.at == later
    assert SegmentMembership.objects.get(segment=seg, contact=ana).entered_at == NOW
    assert seg.member_count == 2

    # ana's order falls out of the 30-day window: she leaves; an erased contact leaves too
    Contact.objects.filter(external_id="cy").update(erased_at=timezone.now())
    seg = segment_recompute(segment=seg, now=NOW + dt.timedelta(days=31))
    assert members(seg) == set()
    assert seg.member_count == 0
    assert changes(seg).count(("ana", "left")) == 1


def _recompute_queries(n: int, django_assert_max_num_queries) -> int:
    Contact.objects.all().delete()
    for i in range(n):
        contact = ContactFactory(attributes={"plan": "pro" if i % 2 else "free"})
        event(contact, "order.completed", days_ago=i % 40)
    Segment.objects.all().delete()
    segment("inner", {"reachable": "email"})
    seg = segment("buyers", {"all": [BUYERS, {"segment": "inner"}]})
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        seg = segment_recompute(segment=seg, now=NOW)
    assert seg.member_count > 0
    with django_assert_max_num_queries(3):
        assert segment_count(segment=seg, now=NOW) == seg.member_count
    return len(captured)


def test_recompute_is_set_based(django_assert_max_num_queries):
    small = _recompute_queries(10, django_assert_max_num_queries)
    large = _recompute_queries(200, django_assert_max_num_queries)
    assert small == large
    assert large <= 11  # lock, references, membership statement(s) (SQLite: four), count, size


def test_static_segments_take_contacts_and_are_never_recomputed():
    seg = segment("picked", kind="static")
    a, b, c = (ContactFactory(external_id=x) for x in "abc")
    added = static_segment_add(
        segment=seg, contacts=Contact.objects.filter(pk__in=[a.pk, b.pk]), now=NOW
    )
    assert added == 2
    again = static_segment_add(
        segment=seg, contacts=Contact.objects.filter(pk__in=[b.pk, c.pk]), now=NOW
    )
    assert again == 1
    assert members(seg) == {"a", "b", "c"}
    assert changes(seg) == [("a", "entered"), ("b", "entered"), ("c", "entered")]
    assert segment_count(segment=seg) == 3
    with pytest.raises(ValueError, match="never recomputed"):
        segment_recompute(segment=seg, now=NOW)
    dynamic = segment("everyone", {"all": []})
    with pytest.raises(ValueError, match="static"):
        static_segment_add(segment=dynamic, contacts=Contact.objects.all(), now=NOW)


def test_beat_task_recomputes_every_dynamic_segment(settings):
    from config.celery import app

    ContactFactory(timezone="Asia/Jakarta")
    one = segment("jakarta", {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"})
    two = segment("all", {"all": []})
    fixed = segment("fixed", kind="static")
    assert recompute_segments.delay().get() == 2
    assert Segment.objects.get(pk=one.pk).member_count == 1
    assert Segment.objects.get(pk=two.pk).last_computed_at is not None
    assert Segment.objects.get(pk=fixed.pk).last_computed_at is None
    schedule = {e["task"]: e["schedule"] for e in app.conf.beat_schedule.values()}
    assert schedule["audiences.recompute_segments"] == settings.SEGMENT_RECOMPUTE_INTERVAL_SECONDS


# --- Admin -----------------------------------------------------------------------------


def staff(role: str) -> User:
    ensure_staff_groups()
    user = User.objects.create_user(role, is_staff=True)
    user.groups.add(Group.objects.get(name=role.title()))
    return user


def test_admin_validates_the_definition_and_shows_count_and_sample(client):
    client.force_login(staff("marketing"))
    ContactFactory(external_id="jkt", timezone="Asia/Jakarta", first_name="Jaya", last_name="")
    bad = client.post(
        "/admin/audiences/segment/add/",
        {
            "name": "J",
            "slug": "j",
            "kind": "dynamic",
            "definition": '{"all": [{"field": "timezone", "op": "like", "value": 1}]}',
        },
    )
    assert bad.status_code == 200
    assert "all[0].op: Choose one of" in bad.content.decode()
    assert not Segment.objects.exists()
    good = client.post(
        "/admin/audiences/segment/add/",
        {
            "name": "J",
            "slug": "j",
            "kind": "dynamic",
            "definition": '{"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}',
        },
    )
    assert good.status_code == 302, good.content.decode()[:2000]
    seg = Segment.objects.get(slug="j")
    assert AuditEntry.objects.filter(
        action="create", object_type="audiences.segment", object_id=str(seg.pk)
    ).exists()
    page = client.get(f"/admin/audiences/segment/{seg.pk}/change/").content.decode()
    assert "Live count" in page and "Jaya" in page
    assert f"segment__id__exact={seg.pk}" in page


def test_admin_action_add_to_static_segment_is_audited(client):
    client.force_login(staff("marketing"))
    seg = segment("vip", kind="static")
    picked = [ContactFactory(), ContactFactory()]
    ContactFactory()
    response = client.post(
        "/admin/messaging/contact/",
        {
            "action": "add_to_static_segment",
            "_selected_action": [c.pk for c in picked],
            "apply": "Add to segment",
            "segment": seg.pk,
        },
    )
    assert response.status_code == 302
    assert SegmentMembership.objects.filter(segment=seg).count() == 2
    assert Segment.objects.get(pk=seg.pk).member_count == 2
    logged = AuditEntry.objects.filter(action="add_to_static_segment")
    assert logged.aggregate(n=Count("pk"))["n"] == 2
