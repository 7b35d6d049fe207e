"""Admin actions, staff views, the API and commands: each staff action is one audit entry
with the right actor, target and diff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from journeys.blueprints import install_blueprints
from journeys.models import Enrollment, Journey
from messaging.models import ApiKey, Consent, ConsentChange, Message
from messaging.services import consent_set
from outbound.models import WebhookSubscription
from tests.factories import ContactFactory, TemplateFactory

from .conftest import entries

pytestmark = pytest.mark.django_db


def run_action(client, url_name: str, action: str, pks, **extra):
    return client.post(
        reverse(url_name), {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    )


@pytest.fixture
def journey(db) -> Journey:
    install_blueprints()
    return Journey.objects.get(slug="post-purchase")


def waiting_enrollment(journey: Journey) -> Enrollment:
    later = timezone.now() + dt.timedelta(days=2)
    return Enrollment.objects.create(
        journey=journey,
        contact=ContactFactory(),
        entry_policy=journey.entry_policy,
        state=Enrollment.State.WAITING,
        current_step=journey.steps.first(),
        next_run_at=later,
        wait_until=later,
    )


@pytest.mark.parametrize(
    ("action", "status_before", "status_after"),
    [
        ("activate", "draft", "active"),
        ("pause", "active", "paused"),
        ("archive", "active", "archived"),
    ],
)
def test_journey_status_actions(boss, superuser, journey, action, status_before, status_after):
    Journey.objects.filter(pk=journey.pk).update(status=status_before)

    response = run_action(boss, "admin:journeys_journey_changelist", action, [journey.pk])

    assert response.status_code == 302
    [entry] = entries()
    assert (entry.action, entry.object_type, entry.object_id, entry.actor_id) == (
        action,
        "journeys.journey",
        str(journey.pk),
        str(superuser.pk),
    )
    assert entry.changes == {"status": [status_before, status_after]}
    assert entry.context["details"]["selected"] == 1


def test_new_version_names_the_copy_it_created(boss, journey):
    run_action(boss, "admin:journeys_journey_changelist", "new_version", [journey.pk])

    copy = Journey.objects.get(slug=journey.slug, version=journey.version + 1)
    [entry] = entries()
    assert (entry.action, entry.object_id, entry.changes) == ("new_version", str(journey.pk), {})
    created = entry.context["details"]["created"]
    assert {"type": "journeys.journey", "id": str(copy.pk), "label": copy.name} in created


def test_duplicate_names_the_new_journey(boss, journey):
    run_action(boss, "admin:journeys_journey_changelist", "duplicate", [journey.pk])

    copy = Journey.objects.get(slug=f"{journey.slug}-copy")
    [entry] = entries()
    assert (entry.action, entry.object_id) == ("duplicate", str(journey.pk))
    assert entry.context["details"]["created"][0]["id"] == str(copy.pk)


def test_a_refused_activation_is_still_recorded(boss):
    draft = Journey.objects.create(name="Empty", slug="empty", trigger_event="t.go")

    run_action(boss, "admin:journeys_journey_changelist", "activate", [draft.pk])

    [entry] = entries()
    assert (entry.action, entry.changes) == ("activate", {})
    assert Journey.objects.get(pk=draft.pk).status == "draft"


def test_enrollment_exit_and_fast_forward_actions(boss, journey):
    first, second = waiting_enrollment(journey), waiting_enrollment(journey)
    run_action(boss, "admin:journeys_enrollment_changelist", "exit_enrollments", [first.pk])
    run_action(boss, "admin:journeys_enrollment_changelist", "fast_forward", [second.pk])

    exited, forwarded = entries()
    assert (exited.action, exited.object_type, exited.object_id) == (
        "exit_enrollments",
        "journeys.enrollment",
        str(first.pk),
    )
    assert exited.changes["state"] == ["waiting", "exited"]
    assert exited.object_label == f"enrollment #{first.pk}"  # no customer name in labels
    assert (forwarded.action, forwarded.object_id) == ("fast_forward", str(second.pk))
    assert "next_run_at" in forwarded.changes
    # An enrollment's context holds the trigger event's data: named, never copied.
    assert forwarded.changes["context"] == ["[personal data]", "[personal data]"]


def test_an_action_on_all_rows_records_one_entry_per_object(boss, journey):
    enrollments = [waiting_enrollment(journey) for _ in range(30)]

    boss.post(
        reverse("admin:journeys_enrollment_changelist"),
        {"action": "fast_forward", "select_across": "1", "_selected_action": [enrollments[0].pk]},
    )

    recorded = entries(action="fast_forward")
    assert sorted(e.object_id for e in recorded) == sorted(str(e.pk) for e in enrollments)
    assert all(e.context["details"]["selected"] == 30 for e in recorded)


def test_enrollment_exit_view(boss, journey):
    enrollment = waiting_enrollment(journey)
    url = reverse("admin:journeys_enrollment_exit", args=[enrollment.pk])
    boss.get(url)  # the confirmation page records nothing
    assert not AuditEntry.objects.exists()

    assert boss.post(url).status_code == 302

    [entry] = entries()
    assert (entry.action, entry.object_id) == ("exit", str(enrollment.pk))
    assert entry.changes["state"] == ["waiting", "exited"]


def test_template_send_test_action_records_the_message_not_the_form(boss, simulator):
    template = TemplateFactory()
    contact = ContactFactory(is_test=True)  # tests go to test contacts only
    url = "admin:messaging_template_changelist"

    form_page = run_action(boss, url, "send_test", [template.pk])
    assert form_page.status_code == 200
    assert not AuditEntry.objects.exists()  # only the intermediate form was shown

    run_action(boss, url, "send_test", [template.pk], apply="1", contact=str(contact.pk))

    message = Message.objects.get(source="admin-test")
    [entry] = entries()
    assert (entry.action, entry.object_id) == ("send_test", str(template.pk))
    assert entry.context["details"]["created"] == [
        {"type": "messaging.message", "id": str(message.pk), "label": f"message #{message.pk}"}
    ]


def test_template_send_test_view(boss, superuser, simulator):
    template = TemplateFactory(channel="sms")
    url = reverse("touchline-template-send-test", args=[template.pk])

    tester = ContactFactory(is_test=True, phone="+14155552671")
    response = boss.post(url, {"contact": tester.pk}, content_type="application/json")

    assert response.status_code == 201, response.content
    [entry] = entries()
    assert (entry.action, entry.object_type, entry.object_id, entry.actor_label) == (
        "test_send",
        "messaging.template",
        str(template.pk),
        "boss",
    )
    assert entry.context["details"]["message"] == response.json()["message"]["id"]


def test_manual_send_from_the_contact_page(boss, simulator):
    contact = ContactFactory()
    url = reverse("admin:messaging_contact_send", args=[contact.pk])

    response = boss.post(url, {"channel": "sms", "body": "Your parcel is on its way."})

    assert response.status_code == 302
    message = Message.objects.get(source="admin")
    [entry] = entries()
    assert (entry.action, entry.object_id) == ("send_message", str(contact.pk))
    assert entry.context["details"] == {"message": str(message.pk), "channel": "sms"}
    assert "parcel" not in str(entry.context)  # the body stays in the message, not the log


def test_consent_change_by_staff(boss, superuser):
    contact = ContactFactory()
    consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    url = reverse("admin:messaging_contact_consent", args=[contact.pk])

    boss.post(url, {"channel": "sms", "status": "unsubscribed", "note": "asked by phone"})
    boss.post(url, {"channel": "sms", "status": "unsubscribed", "note": "again"})  # no change

    assert Consent.objects.get(contact=contact, channel="sms").status == "unsubscribed"
    [entry] = entries()
    assert (entry.action, entry.object_id, entry.actor_id) == (
        "consent_change",
        str(contact.pk),
        str(superuser.pk),
    )
    assert entry.changes == {"consent.sms": ["subscribed", "unsubscribed"]}


def test_inbox_reply_and_resolve(boss, simulator):
    contact = ContactFactory()
    from messaging.models import Conversation

    Conversation.objects.create(contact=contact, last_inbound_at=timezone.now())
    url = reverse("touchline-conversation", args=[contact.pk])
    assert boss.get(url).status_code == 200
    assert not AuditEntry.objects.exists()  # reading records nothing

    assert boss.post(url, {"channel": "sms", "body": "On its way!"}).status_code == 302
    boss.post(reverse("touchline-resolve", args=[contact.pk]))

    reply, resolved = entries()
    message = Message.objects.get(source="inbox")
    assert (reply.action, reply.object_id) == ("reply", str(contact.pk))
    assert reply.context["details"]["message"] == str(message.pk)
    assert (resolved.action, resolved.object_type) == ("resolve", "messaging.conversation")


def test_webhook_changes_through_the_api_name_the_api_key(api):
    key = ApiKey.objects.get(name="tests")
    created = api.post(
        "/api/v1/webhooks/",
        {"url": "https://crm.example.com/hooks", "event_types": ["message.replied"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    url = f"/api/v1/webhooks/{pk}/"
    assert api.patch(url, {"description": "CRM"}, format="json").status_code == 200
    assert api.patch(url, {"description": "CRM"}, format="json").status_code == 200  # no change
    assert api.delete(url).status_code == 204

    create, change, delete = entries()
    for entry in (create, change, delete):
        assert (entry.actor_kind, entry.actor_id, entry.actor_label) == (
            "api_key",
            key.prefix,
            f"tests ({key.prefix})",
        )
        assert (entry.object_type, entry.object_id) == ("outbound.webhooksubscription", str(pk))
    assert (create.action, change.action, delete.action) == ("create", "change", "delete")
    assert create.changes["secret_encrypted"] == [None, "[hidden]"]
    assert change.changes == {"description": ["", "CRM"]}
    assert delete.changes["url"] == ["https://crm.example.com/hooks", None]
    assert not WebhookSubscription.objects.exists()


def test_an_invalid_api_change_records_nothing(api):
    response = api.post(
        "/api/v1/webhooks/", {"url": "ftp://x.example/", "event_types": ["nope"]}, format="json"
    )
    assert response.status_code == 400
    assert not AuditEntry.objects.exists()


def test_create_api_key_command_is_recorded_as_a_system_action(capsys):
    call_command("create_api_key", "billing", "--scopes", "events:write")

    key = ApiKey.objects.get(name="billing")
    [entry] = entries()
    assert (entry.actor_kind, entry.actor_label, entry.action, entry.object_id) == (
        "system",
        "manage.py create_api_key",
        "create",
        key.prefix,
    )
    assert entry.changes["scopes"] == [None, ["events:write"]]


def test_consent_changes_not_made_by_staff_are_not_in_the_staff_log():
    contact = ContactFactory()
    consent_set(contact=contact, channel="sms", status="unsubscribed", source="keyword")
    assert ConsentChange.objects.filter(contact=contact).exists()
    assert not AuditEntry.objects.exists()
