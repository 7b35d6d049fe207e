""" "Enters segment" / "leaves segment" triggers: each logged membership change becomes one
internal event (key segment-change:<id>), whatever the crashes and repeated recomputes, and
the journey's entry policy decides re-entry."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audiences.live import segment_changes_emit, segments_apply_changed
from audiences.models import SegmentDirtyContact, SegmentMembershipChange
from audiences.services import segment_create, segment_recompute
from journeys.models import Enrollment, Event, Journey, Step
from messaging.models import Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

PRO = {"attribute": "plan", "op": "eq", "value": "pro"}


def vip():
    return segment_create(name="VIP", slug="vip", kind="dynamic", definition=PRO)


def journey(policy="once_at_a_time", trigger="segment.entered", segment="vip", slug="welcome"):
    j = Journey.objects.create(
        name=slug,
        slug=slug,
        status="active",
        trigger_event=trigger,
        trigger_filter={"segment": segment} if segment else {},
        entry_policy=policy,
    )
    Step.objects.create(
        journey=j, position=0, key="pause", kind="wait", config={"duration_seconds": 3600}
    )
    return j


def recompute(segment) -> None:
    segment_recompute(segment=segment, now=timezone.now())
    segment_changes_emit()


def set_plan(contact: Contact, plan: str, segment) -> None:
    Contact.objects.filter(pk=contact.pk).update(attributes={"plan": plan})
    recompute(segment)


def test_entering_enrolls_once_and_recomputing_again_changes_nothing():
    seg = vip()
    j = journey()
    ana = ContactFactory(attributes={"plan": "pro"})
    recompute(seg)
    enrollment = Enrollment.objects.get(journey=j)
    assert enrollment.contact_id == ana.pk
    change = SegmentMembershipChange.objects.get(segment=seg)
    event = Event.objects.get(name="segment.entered")
    assert event.idempotency_key == f"segment-change:{change.pk}"
    assert (event.source, event.properties, event.occurred_at) == (
        "internal",
        {"segment": "vip"},
        change.at,
    )
    assert enrollment.trigger_event_id == event.pk

    recompute(seg)
    assert Enrollment.objects.filter(journey=j).count() == 1
    assert Event.objects.filter(name="segment.entered").count() == 1


def test_a_crash_between_the_change_and_its_event_still_makes_one_event():
    seg = vip()
    j = journey(policy="every_time")
    ContactFactory(attributes={"plan": "pro"})
    segment_recompute(segment=seg, now=timezone.now())
    # The emit ran (its events committed) but the process died before marking: again.
    segment_changes_emit()
    SegmentMembershipChange.objects.update(emitted_at=None)
    assert segment_changes_emit() == 1
    assert Event.objects.filter(name="segment.entered").count() == 1
    assert Enrollment.objects.filter(journey=j).count() == 1


def test_a_failed_emit_leaves_the_change_for_the_next_run(monkeypatch):
    from journeys import segment_triggers

    seg = vip()
    j = journey()
    ContactFactory(attributes={"plan": "pro"})
    segment_recompute(segment=seg, now=timezone.now())
    real = segment_triggers._wanted

    def crash(changes):
        real(changes)
        raise ConnectionError("worker lost")

    monkeypatch.setattr(segment_triggers, "_wanted", crash)
    with pytest.raises(ConnectionError):
        segment_changes_emit()
    assert SegmentMembershipChange.objects.get().emitted_at is None
    monkeypatch.setattr(segment_triggers, "_wanted", real)
    assert segment_changes_emit() == 1
    assert Enrollment.objects.filter(journey=j).count() == 1


@pytest.mark.parametrize(
    ("policy", "after_reentry"),
    [("once", 1), ("once_at_a_time", 1), ("every_time", 2)],
)
def test_leaving_and_entering_again_follows_the_entry_policy(policy, after_reentry):
    seg = vip()
    j = journey(policy=policy)
    ana = ContactFactory(attributes={"plan": "pro"})
    recompute(seg)
    set_plan(ana, "free", seg)
    set_plan(ana, "pro", seg)
    assert Event.objects.filter(name="segment.entered").count() == 2
    assert Enrollment.objects.filter(journey=j).count() == after_reentry


def test_once_at_a_time_enrolls_again_after_the_first_ended():
    seg = vip()
    j = journey(policy="once_at_a_time")
    ana = ContactFactory(attributes={"plan": "pro"})
    recompute(seg)
    Enrollment.objects.filter(journey=j).update(state="completed", ended_at=timezone.now())
    set_plan(ana, "free", seg)
    set_plan(ana, "pro", seg)
    assert Enrollment.objects.filter(journey=j).count() == 2


def test_leaving_is_a_trigger_too_and_other_segments_make_no_events():
    seg = vip()
    other = segment_create(name="All", slug="everyone", kind="dynamic", definition={"all": []})
    left = journey(trigger="segment.left", slug="win-back")
    ana = ContactFactory(attributes={"plan": "pro"})
    recompute(seg)
    recompute(other)
    assert Event.objects.count() == 0  # nobody asked for entries, nor for "everyone"
    set_plan(ana, "free", seg)
    assert list(Event.objects.values_list("name", "properties")) == [
        ("segment.left", {"segment": "vip"})
    ]
    assert Enrollment.objects.get(journey=left).contact_id == ana.pk


def test_the_live_path_enrolls_within_one_task_run(django_capture_on_commit_callbacks):
    from audiences.tasks import apply_changed_contacts
    from messaging.services.contacts import contact_upsert

    vip()
    j = journey()
    with django_capture_on_commit_callbacks(execute=True):
        contact_upsert(external_id="ana", data={"attributes": {"plan": "pro"}})
    assert SegmentDirtyContact.objects.exists()
    apply_changed_contacts.delay().get()
    assert Enrollment.objects.get(journey=j).contact.external_id == "ana"
    # marked again, nothing changed: no second entry
    SegmentDirtyContact.objects.create(contact_id=Contact.objects.get(external_id="ana").pk)
    segments_apply_changed()
    segment_changes_emit()
    assert Enrollment.objects.filter(journey=j).count() == 1


def test_a_trigger_without_a_segment_filter_takes_every_segment():
    seg = vip()
    j = journey(segment=None)
    ContactFactory(attributes={"plan": "pro"})
    recompute(seg)
    assert Enrollment.objects.filter(journey=j).count() == 1


# --- The journey form offers the triggers in a marketer's words ---------------------------


def _journey_post(**fields):
    return {
        "name": "Welcome VIPs",
        "slug": "welcome-vips",
        "description": "",
        "trigger_kind": "event",
        "trigger_segment": "",
        "trigger_event": "",
        "trigger_filter": "{}",
        "entry_policy": "once_at_a_time",
        "entry_key": "",
        "goal_event": "",
        "goal_match": "{}",
        "category": "marketing",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "frequency_cap_action": "hold",
        "conversion_window_hours": "72",
        "attribution_model": "last_click",
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_the_journey_form_offers_enters_and_leaves_segment(client):
    from tests.audiences.test_membership import staff

    client.force_login(staff("marketing"))
    vip()
    page = client.get("/admin/journeys/journey/add/").content.decode()
    assert "When a contact enters a segment" in page and "When a contact leaves a segment" in page
    assert '<option value="vip">VIP</option>' in page

    missing = client.post(
        "/admin/journeys/journey/add/", _journey_post(trigger_kind="segment.entered")
    )
    assert missing.status_code == 200 and "Pick the segment." in missing.content.decode()
    saved = client.post(
        "/admin/journeys/journey/add/",
        _journey_post(
            trigger_kind="segment.entered", trigger_segment="vip", trigger_filter='{"x": 1}'
        ),
    )
    assert saved.status_code == 302, saved.content.decode()[:3000]
    j = Journey.objects.get(slug="welcome-vips")
    assert (j.trigger_event, j.trigger_filter) == ("segment.entered", {"x": 1, "segment": "vip"})
    page = client.get(f"/admin/journeys/journey/{j.pk}/change/").content.decode()
    assert '<option value="segment.entered" selected>' in page
    assert '<option value="vip" selected>' in page

    no_event = client.post("/admin/journeys/journey/add/", _journey_post(slug="other"))
    assert "Name the event that starts the journey." in no_event.content.decode()
    event = client.post(
        "/admin/journeys/journey/add/", _journey_post(slug="other", trigger_event="order.done")
    )
    assert event.status_code == 302
    assert Journey.objects.get(slug="other").trigger_event == "order.done"


def test_a_live_journeys_trigger_is_shown_read_only(client):
    from tests.audiences.test_membership import staff

    client.force_login(staff("marketing"))
    vip()
    j = journey()
    page = client.get(f"/admin/journeys/journey/{j.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'name="trigger_kind"' not in text and "segment.entered" in text


def test_a_journey_naming_a_missing_segment_cannot_be_activated():
    from journeys.lifecycle import journey_activate

    vip()
    j = journey(segment=["vip", "gone"])
    Journey.objects.filter(pk=j.pk).update(status="draft")
    j.refresh_from_db()
    assert journey_activate(journey=j) == ["Trigger: there is no segment “gone”."]
    j.trigger_filter = {"segment": "vip"}
    j.save()
    assert journey_activate(journey=j) == []


@pytest.mark.parametrize("name", ["segment.entered", "segment.left", "Segment.Entered"])
def test_backends_cannot_fake_segment_events(api, name):
    """`segment.*` events come only from membership changes: a backend posting one (which
    would start every "enters segment" journey for any contact) gets a 400, alone or in a
    batch, and nothing is stored."""
    from journeys.models import Event

    body = {"name": name, "contact": {"external_id": "c-1"}, "properties": {"segment": "vip"}}
    single = api.post("/api/v1/events/", body, format="json")
    assert single.status_code == 400
    assert single.json()["errors"][0]["attr"] == "name"
    batch = api.post("/api/v1/events/batch/", {"events": [body]}, format="json")
    assert batch.status_code == 200
    assert [r["status"] for r in batch.json()["results"]] == [400]
    assert Event.objects.count() == 0
