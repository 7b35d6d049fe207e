"""Every admin write is one audit entry with the right actor and field diff."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from audit.admin_mixins import AuditedAdminMixin
from audit.models import AuditEntry
from journeys.models import Journey, Step
from messaging.models import ApiKey, Contact, Template
from outbound.models import WebhookSubscription
from tests.factories import ContactFactory

from .conftest import admin_form_data, entries

pytestmark = pytest.mark.django_db


def test_every_registered_admin_is_audited():
    unaudited = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, AuditedAdminMixin) and model is not AuditEntry
    ]
    assert unaudited == []


def test_journey_create_then_change_with_a_field_diff(boss, superuser):
    add = reverse("admin:journeys_journey_add")
    data = admin_form_data(
        boss.get(add), name="Welcome", slug="welcome", trigger_event="user.signed_up"
    )
    assert boss.post(add, data).status_code == 302
    journey = Journey.objects.get(slug="welcome")

    [created] = entries()
    assert (created.action, created.object_type, created.object_id) == (
        "create",
        "journeys.journey",
        str(journey.pk),
    )
    assert (created.actor_kind, created.actor_id, created.actor_label) == (
        "user",
        str(superuser.pk),
        "boss",
    )
    assert created.changes["name"] == [None, "Welcome"]
    assert created.context["method"] == "POST" and created.context["path"] == add

    change = reverse("admin:journeys_journey_change", args=[journey.pk])
    assert boss.post(change, admin_form_data(boss.get(change), name="Hello")).status_code == 302
    [changed] = entries(action="change")
    assert changed.object_label == "Hello"
    assert changed.changes == {"name": ["Welcome", "Hello"]}

    # Saving without changing anything records nothing.
    assert boss.post(change, admin_form_data(boss.get(change))).status_code == 302
    assert AuditEntry.objects.count() == 2


def test_step_change_through_the_inline_is_its_own_entry(boss):
    journey = Journey.objects.create(name="Draft", slug="draft", trigger_event="t.go")
    step = Step.objects.create(journey=journey, position=0, key="bye", kind="exit")
    change = reverse("admin:journeys_journey_change", args=[journey.pk])
    page = boss.get(change)
    data = admin_form_data(page)
    data["steps-0-next_step"] = "end"

    response = boss.post(change, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    [entry] = entries()
    assert (entry.action, entry.object_type, entry.object_id) == (
        "change",
        "journeys.step",
        str(step.pk),
    )
    assert entry.changes == {"next_step": ["", "end"]}
    assert entry.context["details"]["parent"]["id"] == str(journey.pk)


def test_template_create_and_change(boss):
    add = reverse("admin:messaging_template_add")
    data = admin_form_data(boss.get(add), name="Hi", slug="hi", channel="sms", body="Hello!")
    assert boss.post(add, data).status_code == 302
    template = Template.objects.get(slug="hi")
    change = reverse("admin:messaging_template_change", args=[template.pk])
    data = admin_form_data(boss.get(change), body="Hello {{ contact.first_name }}!")
    assert boss.post(change, data).status_code == 302

    created, changed = entries()
    assert (created.action, created.object_type) == ("create", "messaging.template")
    assert changed.changes == {"body": ["Hello!", "Hello {{ contact.first_name }}!"]}


def test_api_key_create_and_revoke_keep_the_hash_out(boss):
    add = reverse("admin:messaging_apikey_add")
    assert boss.post(add, admin_form_data(boss.get(add), name="crm")).status_code == 302
    key = ApiKey.objects.get(name="crm")
    change = reverse("admin:messaging_apikey_change", args=[key.pk])
    assert boss.post(change, admin_form_data(boss.get(change), revoked="on")).status_code == 302

    created, revoked = entries()
    assert (created.action, created.object_id) == ("create", key.prefix)
    assert created.changes["hashed_key"] == [None, "[hidden]"]
    assert created.changes["id"] == [None, key.prefix]
    assert (revoked.action, revoked.object_id) == ("revoke", key.prefix)
    assert revoked.changes == {"revoked": [False, True]}
    assert key.hashed_key not in str(created.changes) + str(revoked.changes) + created.object_id


def test_webhook_subscription_admin_create_change_and_reenable(boss):
    add = reverse("admin:outbound_webhooksubscription_add")
    data = {
        "url": "https://crm.example.com/hooks",
        "description": "CRM",
        "event_types": ["message.replied"],
        "is_active": "on",
    }
    assert boss.post(add, data).status_code == 302
    subscription = WebhookSubscription.objects.get()
    change = reverse("admin:outbound_webhooksubscription_change", args=[subscription.pk])
    data = admin_form_data(boss.get(change), description="CRM (prod)")
    data.pop("is_active", None)  # unticked: disables it
    assert boss.post(change, data).status_code == 302
    boss.post(
        reverse("admin:outbound_webhooksubscription_changelist"),
        {"action": "reenable", "_selected_action": [subscription.pk]},
    )

    created, changed, reenabled = entries()
    assert created.action == "create"
    assert created.changes["secret_encrypted"] == [None, "[hidden]"]
    assert subscription.secret not in str(created.changes)
    assert changed.action == "change"
    assert changed.changes["description"] == ["CRM", "CRM (prod)"]
    assert changed.changes["is_active"] == [True, False]
    assert reenabled.action == "reenable"
    assert reenabled.changes["is_active"] == [False, True]


def test_contact_change_records_fields_but_not_personal_data(boss):
    contact = ContactFactory(email="old@example.com")
    change = reverse("admin:messaging_contact_change", args=[contact.pk])
    data = admin_form_data(boss.get(change), email="new@example.com", locale="fr")
    response = boss.post(change, data)
    assert response.status_code == 302, response.context and response.context["errors"]

    [entry] = entries()
    assert entry.object_label == f"contact #{contact.pk}"
    assert entry.changes == {
        "email": ["[personal data]", "[personal data]"],
        "locale": ["", "fr"],
    }
    assert "example.com" not in str(entry.changes) + entry.object_label


def test_staff_role_change_on_a_user_is_recorded(boss, superuser):
    # (the form shows date_joined to the second: a microsecond would be a change)
    user = User.objects.create_user(
        "ann", is_staff=True, date_joined=timezone.now().replace(microsecond=0)
    )
    viewer, _ = Group.objects.get_or_create(name="Viewer")
    change = reverse("admin:auth_user_change", args=[user.pk])
    data = admin_form_data(boss.get(change), groups=[str(viewer.pk)])
    response = boss.post(change, data)
    assert response.status_code == 302, response.context and response.context["errors"]

    [entry] = entries()
    assert (entry.action, entry.object_type, entry.object_label) == ("change", "auth.user", "ann")
    assert entry.changes == {"groups": [[], [str(viewer.pk)]]}


def test_delete_in_the_admin_is_recorded_with_what_was_deleted(boss):
    template = Template.objects.create(slug="gone", channel="sms", name="Gone", body="x")
    delete = reverse("admin:messaging_template_delete", args=[template.pk])
    assert boss.post(delete, {"post": "yes"}).status_code == 302

    [entry] = entries()
    assert (entry.action, entry.object_id, entry.object_label) == (
        "delete",
        str(template.pk),
        "Gone (SMS)",
    )
    assert entry.changes["body"] == ["x", None]
    assert not Contact.objects.exists()  # nothing else touched
