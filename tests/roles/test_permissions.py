"""The permissions behind the role table, one at a time (issue 12)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import Permission, User
from django.urls import reverse

from .world import assert_untouched, fresh, snapshot


def _staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # a fresh permission cache


def test_writing_to_a_customer_needs_send_message(
    client, world, simulator, django_capture_on_commit_callbacks
):
    """Inbox and contact rights alone (what Support had before) no longer let staff write."""
    base = (
        "messaging.use_inbox",
        "messaging.view_conversation",
        "messaging.change_conversation",
        "messaging.view_contact",
        "messaging.change_contact",
    )
    client.force_login(_staff("helper", *base))
    conversation = reverse("touchline-conversation", args=[world.customer.pk])
    send = reverse("admin:messaging_contact_send", args=[world.customer.pk])
    page = client.get(conversation)
    assert page.status_code == 200 and b'id="reply-form"' not in page.content
    contact_page = client.get(reverse("admin:messaging_contact_change", args=[world.customer.pk]))
    assert send.encode() not in contact_page.content
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(conversation, {"channel": "sms", "body": "hi"}).status_code == 403
        assert client.post(send, {"channel": "sms", "body": "hi"}).status_code == 403
    assert_untouched(before, simulator, "replying without send_message")

    client.force_login(_staff("sender", *base, "messaging.send_message"))
    assert b'id="reply-form"' in client.get(conversation).content
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(conversation, {"channel": "sms", "body": "hi"}).status_code == 302
        assert client.post(send, {"channel": "sms", "body": "hello"}).status_code == 302
    assert [m["body"] for m in simulator.messages()] == ["hi", "hello"]


def test_only_test_contact_managers_can_flag_or_readdress_test_contacts(client, world):
    """A forged contact form cannot make a customer a test recipient (and so a target for
    template tests), nor point a test contact at a customer's number."""
    support = world.users["support"]
    url = reverse("admin:messaging_contact_change", args=[world.customer.pk])
    client.force_login(support)
    page = client.get(url)
    assert page.status_code == 200 and 'name="is_test"' not in page.content.decode()
    forged = {"is_test": "on", "test_owner": support.pk, "first_name": "Changed"}
    response = client.post(url, {**_as_posted(page), **forged})
    assert response.status_code == 302, response.context and response.context["errors"]
    customer = fresh(world.customer)
    assert customer.first_name == "Changed"  # the edit went through, the flag did not
    assert (customer.is_test, customer.test_owner) == (False, None)

    test_url = reverse("admin:messaging_contact_change", args=[world.test_contact.pk])
    page = client.get(test_url)
    response = client.post(test_url, {**_as_posted(page), "phone": world.customer.phone})
    assert response.status_code == 302
    assert fresh(world.test_contact).phone == "+14155550199"

    client.force_login(world.users["superuser"])
    page = client.get(url)
    assert 'name="is_test"' in page.content.decode()
    assert client.post(url, {**_as_posted(page), **forged}).status_code == 302
    customer = fresh(world.customer)
    assert (customer.is_test, customer.test_owner) == (True, support)


def _as_posted(page) -> dict[str, Any]:
    """What a browser would post back from this admin change page, unchanged."""
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        forms.append(management)
        forms.extend(inline.formset.forms)
    data: dict[str, Any] = {}
    for form in forms:
        for name in form.fields:
            bound = form[name]
            value = bound.field.prepare_value(bound.value())
            if value is True:
                data[bound.html_name] = "on"
            elif value is not None and value is not False:
                data[bound.html_name] = value
    return data


def test_template_tests_never_reach_a_customer_whatever_is_posted(
    client, world, simulator, django_capture_on_commit_callbacks
):
    """Marketing may send tests, but naming a customer (form, action or endpoint) sends nothing."""
    client.force_login(world.users["marketing"])
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:messaging_template_changelist"),
            {
                "action": "send_test",
                "_selected_action": [world.template.pk],
                "index": 0,
                "apply": "Send test",
                "contact": world.customer.pk,
            },
        )
        assert response.status_code == 200 and response.context["form"].errors
        response = client.post(
            reverse("touchline-template-send-test", args=[world.template.pk]),
            json.dumps({"contact": world.customer.pk}),
            content_type="application/json",
        )
        assert response.status_code == 400
        response = client.post(
            reverse("touchline-template-send-test", args=[world.template.pk]),
            json.dumps({"phone": world.customer.phone}),
            content_type="application/json",
        )
        assert response.status_code == 400
    assert_untouched(before, simulator, "a test aimed at a customer")


def test_a_contact_form_missing_its_inline_rows_is_refused_not_a_500(client, world):
    client.force_login(world.users["support"])
    url = reverse("admin:messaging_contact_change", args=[world.customer.pk])
    posted = {k: v for k, v in _as_posted(client.get(url)).items() if not k.endswith("-id")}
    response = client.post(url, posted)
    assert response.status_code == 200 and response.context["errors"]
