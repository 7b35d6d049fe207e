"""Broadcasts in the admin: the marketer's form, the review page (dry run, test send,
typed confirmation), read-only once launched, permissions checked by each view."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from audit.models import AuditEntry
from campaigns.models import Broadcast, BroadcastRecipient
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Message
from tests.factories import ContactFactory

from .ui_helpers import NOW, broadcast, sms_subscriber, static_segment, templates

pytestmark = pytest.mark.django_db


def staff(role: str) -> User:
    ensure_staff_groups()
    user = User.objects.create_user(role, email=f"{role}@staff.example", is_staff=True)
    user.groups.add(Group.objects.get(name=role.title()))
    return user


@pytest.fixture
def marketer(client):
    user = staff("marketing")
    client.force_login(user)
    return user


@pytest.fixture
def audience():
    templates()
    return static_segment("everyone", [sms_subscriber() for _ in range(3)])


def _form(audience, **extra):
    return {
        "name": "Black Friday",
        "slug": "black-friday",
        "description": "",
        "segments": [audience.pk],
        "template_slug": "promo",
        "channel_order_0": "sms",
        "channel_order_1": "email",
        "channel_order_2": "",
        "channel_order_3": "",
        "category": "marketing",
        "send_mode": "now",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "frequency_cap_action": "hold",
        "conversion_events": "order.completed",
        "conversion_window_hours": "72",
        "attribution_model": "last_click",
        "revenue_property": "total",
        **extra,
    }


def test_a_marketer_builds_a_broadcast_with_the_form(client, marketer, audience):
    page = client.get(reverse("admin:campaigns_broadcast_add"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "promo — Email, SMS" in html  # the family and its channels
    assert 'name="channel_order_0"' in html

    response = client.post(
        reverse("admin:campaigns_broadcast_add"), {**_form(audience), "_review": "1"}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Broadcast.objects.get()
    assert response["Location"] == reverse("admin:campaigns_broadcast_review", args=[created.pk])
    assert created.channel_order == ["sms", "email"]
    assert list(created.segments.all()) == [audience]
    assert created.created_by == marketer
    assert AuditEntry.objects.filter(action="create").exists()


def test_form_errors_are_field_level(client, marketer, audience):
    cases = [
        ({"channel_order_0": "", "channel_order_1": ""}, "channel_order"),
        ({"channel_order_1": "sms"}, "channel_order"),
        ({"channel_order_0": "whatsapp", "channel_order_1": ""}, "channel_order"),
        ({"send_mode": "local"}, "local_send_date"),
        ({"exclude_segments": [audience.pk]}, "exclude_segments"),
        ({"throttle_per_minute": "0"}, "throttle_per_minute"),
        ({"send_mode": "at", "send_at_0": "2001-01-01", "send_at_1": "10:00"}, "send_at"),
    ]
    for extra, field in cases:
        response = client.post(reverse("admin:campaigns_broadcast_add"), _form(audience, **extra))
        assert response.status_code == 200, extra
        assert field in response.context["adminform"].form.errors, (extra, field)
    assert not Broadcast.objects.exists()


def test_review_page_shows_the_dry_run_and_the_launch_confirmation(client, marketer, audience):
    ContactFactory()  # not in the audience
    b = broadcast([audience])
    page = client.get(reverse("admin:campaigns_broadcast_review", args=[b.pk]))
    assert page.status_code == 200
    assert page.context["dry_run"]["audience"] == 3
    html = page.content.decode()
    assert 'id="dry-run"' in html
    assert 'id="launch-form"' in html
    assert 'id="send-test"' in html


def test_launch_needs_the_name_typed(client, marketer, audience):
    b = broadcast([audience])
    response = client.post(
        reverse("admin:campaigns_broadcast_launch", args=[b.pk]), {"confirm_name": "nope"}
    )
    assert response.status_code == 200
    assert "confirm_name" in response.context["launch_form"].errors
    b.refresh_from_db()
    assert b.status == "draft"
    assert not BroadcastRecipient.objects.exists()


def test_a_launched_broadcast_is_read_only(client, marketer, audience):
    b = broadcast([audience])
    Broadcast.objects.filter(pk=b.pk).update(status="sending")
    page = client.get(reverse("admin:campaigns_broadcast_change", args=[b.pk]))
    assert page.status_code == 200
    assert page.context["adminform"].form.fields == {}
    response = client.post(
        reverse("admin:campaigns_broadcast_change", args=[b.pk]),
        _form(audience, name="Changed", channel_order_0="email"),
    )
    assert response.status_code == 302
    b.refresh_from_db()
    assert (b.name, b.channel_order) == ("Black Friday", ["sms", "email"])


def test_send_me_a_test_reaches_only_my_own_test_contacts(client, marketer, audience, simulator):
    mine = ContactFactory(phone="+14155550777", email="", is_test=True, test_owner=marketer)
    other = ContactFactory(phone="+14155550778", is_test=True, test_owner=None)
    b = broadcast([audience])
    response = client.post(reverse("admin:campaigns_broadcast_send_test", args=[b.pk]))
    assert response.status_code == 302
    sent = Message.objects.filter(source="admin-test")
    assert {(m.channel, m.contact_id) for m in sent} == {
        ("sms", mine.pk),
        ("email", Contact_for(marketer)),
    }
    assert not sent.filter(contact=other).exists()
    assert not Message.objects.exclude(source="admin-test").exists()
    assert AuditEntry.objects.filter(action="send_test").exists()


def Contact_for(user: User) -> int:
    from messaging.models import Contact

    return Contact.objects.get(is_test=True, test_owner=user, email=user.email).pk


@pytest.mark.parametrize("name", ["launch", "pause", "resume", "cancel"])
def test_buttons_are_refused_without_the_launch_permission(client, audience, name):
    user = staff("viewer")
    client.force_login(user)
    b = broadcast([audience])
    status = {"launch": "draft", "resume": "paused"}.get(name, "sending")
    Broadcast.objects.filter(pk=b.pk).update(status=status)
    url = reverse(f"admin:campaigns_broadcast_{name}", args=[b.pk])
    data = {"confirm_name": b.name, "confirm": "on"}
    assert client.post(url, data).status_code == 403
    b.refresh_from_db()
    assert b.status == status
    assert not BroadcastRecipient.objects.exists()
    assert (
        client.post(reverse("admin:campaigns_broadcast_send_test", args=[b.pk])).status_code == 403
    )
    assert not Message.objects.exists()


def test_report_page_and_recipients_list(client, marketer, audience):
    b = broadcast([audience])
    contact = audience.memberships.first().contact
    BroadcastRecipient.objects.create(
        broadcast=b,
        contact=contact,
        state="skipped",
        reason="marketing sms needs an explicit subscription",
        send_after=b.created_at,
        updated_at=b.created_at,
    )
    page = client.get(reverse("admin:campaigns_broadcast_report", args=[b.pk]))
    assert page.status_code == 200
    assert page.context["report"]["states"]["skipped"] == 1
    data = client.get(reverse("admin:campaigns_broadcast_report_data", args=[b.pk])).json()
    assert data["totals"]["recipients"] == 1
    assert "activity" in data
    listed = client.get(
        reverse("admin:campaigns_broadcastrecipient_changelist") + "?state__exact=skipped"
    )
    assert listed.status_code == 200
    assert reverse("touchline-timeline", args=[contact.pk]) in listed.content.decode()


def test_launch_pause_resume_cancel_from_the_admin(client, marketer, audience):
    b = broadcast([audience], send_mode="at", send_at="2099-01-01T10:00:00Z")
    response = client.post(
        reverse("admin:campaigns_broadcast_launch", args=[b.pk]), {"confirm_name": "black friday"}
    )
    assert response.status_code == 302
    b.refresh_from_db()
    assert (b.status, b.recipient_count, b.launched_by) == ("scheduled", 3, marketer)
    page = client.get(reverse("admin:campaigns_broadcast_change", args=[b.pk]))
    assert page.context["offered_actions"] == ["pause", "cancel"]
    assert 'id="broadcast-pause"' in page.content.decode()

    pause = reverse("admin:campaigns_broadcast_pause", args=[b.pk])
    assert client.get(pause).status_code == 200
    assert client.post(pause, {}).status_code == 200  # the box not ticked: nothing done
    b.refresh_from_db()
    assert b.status == "scheduled"
    client.post(pause, {"confirm": "on"})
    b.refresh_from_db()
    assert b.status == "paused"
    client.post(reverse("admin:campaigns_broadcast_resume", args=[b.pk]), {"confirm": "on"})
    b.refresh_from_db()
    assert b.status == "scheduled"
    client.post(reverse("admin:campaigns_broadcast_cancel", args=[b.pk]), {"confirm": "on"})
    b.refresh_from_db()
    assert b.status == "cancelled"
    entries = AuditEntry.objects.filter(action__in=["launch", "pause", "resume", "cancel"])
    assert entries.count() == 4


def test_a_refused_launch_shows_why(client, marketer, audience):
    b = broadcast([audience], send_mode="at", send_at="2001-01-01T10:00:00Z")
    response = client.post(
        reverse("admin:campaigns_broadcast_launch", args=[b.pk]),
        {"confirm_name": b.name},
        follow=True,
    )
    assert "send time has passed" in response.content.decode()
    b.refresh_from_db()
    assert b.status == "draft"


def test_a_draft_is_edited_with_its_values_in_the_widgets(client, marketer, audience):
    b = broadcast([audience], channel_order=["preferred", "email"])
    url = reverse("admin:campaigns_broadcast_change", args=[b.pk])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<option value="preferred" selected>' in html
    assert 'id="broadcast-report"' not in html  # no chart before launch
    form = _form(audience, name="Cyber Monday", channel_order_0="email", channel_order_1="sms")
    assert client.post(url, form).status_code == 302
    b.refresh_from_db()
    assert (b.name, b.slug, b.channel_order) == ("Cyber Monday", "black-friday", ["email", "sms"])
    assert AuditEntry.objects.filter(action="change").exists()


def test_only_a_draft_launches(client, marketer, audience):
    b = broadcast([audience], send_mode="at", send_at="2099-01-01T10:00:00Z")
    url = reverse("admin:campaigns_broadcast_launch", args=[b.pk])
    client.post(url, {"confirm_name": b.name})
    newcomer = sms_subscriber()
    from audiences.services import static_segment_add
    from messaging.models import Contact

    static_segment_add(segment=audience, contacts=Contact.objects.filter(pk=newcomer.pk), now=NOW)
    response = client.post(url, {"confirm_name": b.name})
    assert response.status_code == 200
    assert "scheduled" in str(response.context["launch_form"].non_field_errors())
    assert BroadcastRecipient.objects.filter(broadcast=b).count() == 3


def test_the_review_page_reads_a_fixed_number_of_queries(client, marketer, audience):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audiences.services import static_segment_add
    from messaging.models import Contact

    b = broadcast([audience])
    url = reverse("admin:campaigns_broadcast_review", args=[b.pk])

    def measure() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    before = measure()
    more = [sms_subscriber(timezone="Asia/Tokyo") for _ in range(10)]
    static_segment_add(
        segment=audience, contacts=Contact.objects.filter(pk__in=[c.pk for c in more]), now=NOW
    )
    assert measure() == before
