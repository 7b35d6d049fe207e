"""Template editor: live preview endpoint, SMS segments, CSS inlining, "Send test to me"."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from messaging.email_html import inline_email_css
from messaging.models import Contact, Message, Touchpoint
from messaging.sms import GSM7, UCS2, sms_segments
from tests.factories import ContactFactory, TemplateFactory

PREVIEW = "/admin/touchline/templates/preview/"


def send_test_url(pk: int) -> str:
    return f"/admin/touchline/templates/{pk}/send-test/"


def preview(client, status: int = 200, **fields):
    payload = {"channel": "sms", "subject": "", "body": "", "html_body": "", **fields}
    response = client.post(PREVIEW, json.dumps(payload), content_type="application/json")
    assert response.status_code == status, response.content
    return response.json()


def staff_user(*perms: str, email: str = "", username: str = "staffer") -> User:
    user = User.objects.create_user(username, email=email, password="x", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


# --- SMS segments (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "characters", "segments"),
    [
        ("", GSM7, 0, 0),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        # Extension characters cost two septets.
        ("€" * 80, GSM7, 160, 1),
        ("a" * 159 + "€", GSM7, 161, 2),
        ("[]{}\\^~|", GSM7, 16, 1),
        # …and an escape pair is never split across parts: 152 + € cannot share a part.
        ("a" * 152 + "€" + "a" * 152, GSM7, 306, 3),
        ("Grüße, Ñoño! @£$¥ 100% ok?", GSM7, 26, 1),
        ("ł" * 70, UCS2, 70, 1),
        ("ł" * 71, UCS2, 71, 2),
        ("ł" * 134, UCS2, 134, 2),
        ("ł" * 135, UCS2, 135, 3),
        ("Thanks 🎉", UCS2, 9, 1),  # an emoji is two UTF-16 units
        ("😀" * 35, UCS2, 70, 1),
        ("😀" * 36, UCS2, 72, 2),
        # A surrogate pair is not split either: 66 + 2 does not fit in a 67-unit part.
        ("a" * 66 + "😀" + "a" * 66, UCS2, 134, 3),
    ],
)
def test_sms_segments(text, encoding, characters, segments):
    info = sms_segments(text)
    assert (info.encoding, info.characters, info.segments) == (encoding, characters, segments)


def test_sms_per_segment_limit():
    assert sms_segments("hi").per_segment == 160
    assert sms_segments("a" * 161).per_segment == 153
    assert sms_segments("ł").per_segment == 70
    assert sms_segments("ł" * 71).per_segment == 67


# --- CSS inlining (pure) --------------------------------------------------------------


def test_inline_email_css_moves_rules_onto_elements_and_is_stable():
    html = inline_email_css("<style>p{color:red}</style><p>x</p>")
    assert '<p style="color: red;">x</p>' in html
    assert "<style" not in html
    assert inline_email_css(html) == html


def test_inline_email_css_keeps_media_queries_and_leaves_plain_html_alone():
    html = inline_email_css(
        "<style>p{color:red} @media (max-width: 600px){p{color:blue}}</style><p>x</p>"
    )
    assert '<p style="color: red;">' in html and "@media" in html
    assert inline_email_css("<p>Thank you, <b>Grace</b>.</p>") == "<p>Thank you, <b>Grace</b>.</p>"
    assert inline_email_css("") == ""


# --- Preview endpoint -----------------------------------------------------------------


@pytest.mark.django_db
def test_sms_preview_renders_for_the_chosen_contact_with_gsm7_segments(admin_client):
    contact = ContactFactory(first_name="Grace")
    answer = preview(
        admin_client,
        contact=contact.pk,
        event='{"order_id": "77"}',
        body="Hi {{ contact.first_name }}, order {{ event.order_id }} is on its way.",
    )
    assert answer["errors"] == {}
    assert answer["contact"]["id"] == contact.pk
    assert answer["rendered"]["text"] == "Hi Grace, order 77 is on its way."
    assert answer["rendered"]["sms"] == {
        "encoding": "GSM-7",
        "characters": 33,
        "segments": 1,
        "per_segment": 160,
    }


@pytest.mark.django_db
def test_sms_preview_switches_to_ucs2_and_counts_segments(admin_client):
    answer = preview(admin_client, body="Dziękujemy, {{ contact.first_name }}! " + "x" * 40)
    sms = answer["rendered"]["sms"]
    assert answer["rendered"]["text"].startswith("Dziękujemy, Ada!")  # the sample contact
    assert (sms["encoding"], sms["characters"], sms["segments"], sms["per_segment"]) == (
        "UCS-2",
        57,
        1,
        70,
    )
    answer = preview(admin_client, body="🎉" * 36)
    assert answer["rendered"]["sms"]["segments"] == 2
    assert answer["rendered"]["sms"]["per_segment"] == 67


@pytest.mark.django_db
def test_default_sample_event_is_used_when_none_is_given(admin_client):
    answer = preview(admin_client, body="{{ event.name }} #{{ event.order_id }}")
    assert answer["rendered"]["text"] == "order.completed #1001"


@pytest.mark.django_db
def test_liquid_error_comes_back_on_its_field_with_the_line_number(admin_client):
    answer = preview(
        admin_client, body="Hello\nthere\n{{ contact.first_name | no_such_filter }}", subject=""
    )
    assert answer["rendered"] is None
    assert answer["errors"]["body"] == ["line 3: unknown filter 'no_such_filter'"]
    answer = preview(
        admin_client,
        channel="email",
        subject="Hi",
        html_body="<p>\n{% if contact.first_name %}\nHi\n",
    )
    assert answer["errors"]["html_body"] == ["line 3: expected tag endif, found end of expression"]


@pytest.mark.django_db
def test_invalid_content_variables_are_a_field_error(admin_client):
    answer = preview(admin_client, channel="whatsapp", body="hi", content_variables="{not json")
    assert "content_variables" in answer["errors"]
    assert answer["errors"]["content_variables"][0].startswith("Not valid JSON")


@pytest.mark.django_db
def test_email_preview_inlines_css_and_generates_the_text_part(admin_client):
    answer = preview(
        admin_client,
        channel="email",
        subject="Thanks {{ contact.first_name }}",
        html_body="<style>p{color:red}</style><p>Thank you, {{ contact.first_name }}.</p>",
    )
    email = answer["rendered"]["email"]
    assert answer["rendered"]["subject"] == "Thanks Ada"
    assert '<p style="color: red;">Thank you, Ada.</p>' in email["html"]
    assert email["text"] == "Thank you, Ada." and email["text_generated"] is True

    answer = preview(
        admin_client,
        channel="email",
        subject="Hi",
        body="Plain {{ contact.first_name }}",
        html_body="<p>Rich</p>",
    )
    email = answer["rendered"]["email"]
    assert email["text"] == "Plain Ada" and email["text_generated"] is False
    assert email["html"] == "<p>Rich</p>"


@pytest.mark.django_db
def test_email_preview_reports_save_checks_too(admin_client):
    answer = preview(admin_client, channel="email", subject="", html_body="<p>x</p>")
    assert answer["errors"] == {"subject": ["An email needs a subject."]}
    assert answer["rendered"]["email"]["text"] == "x"


@pytest.mark.django_db
def test_whatsapp_preview_fills_content_variables_and_names_the_part_sent(admin_client):
    contact = ContactFactory(first_name="Lin", whatsapp="+14155550199")
    fields = {
        "channel": "whatsapp",
        "body": "Hi {{ contact.first_name }}",
        "content_sid": "HX" + "0" * 32,
        "content_variables": json.dumps(
            {"1": "{{ contact.first_name }}", "2": "{{ event.order_id }}"}
        ),
        "contact": contact.pk,
    }
    wa = preview(admin_client, **fields)["rendered"]["whatsapp"]
    assert wa["content_variables"] == {"1": "Lin", "2": "1001"}
    assert wa["content_sid"] == "HX" + "0" * 32
    assert (wa["in_window"], wa["sends_now"], wa["freeform_inside_window"]) == (
        False,
        "template",
        True,
    )
    Contact.objects.filter(pk=contact.pk).update(
        last_inbound_whatsapp_at=timezone.now() - dt.timedelta(hours=2)
    )
    wa = preview(admin_client, **fields)["rendered"]["whatsapp"]
    assert (wa["in_window"], wa["sends_now"]) == (True, "freeform")
    # Outside the window with no content SID the send would be skipped.
    Contact.objects.filter(pk=contact.pk).update(last_inbound_whatsapp_at=None)
    wa = preview(admin_client, **{**fields, "content_sid": "", "content_variables": ""})[
        "rendered"
    ]["whatsapp"]
    assert wa["sends_now"] is None and "24-hour window" in wa["reason"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "__all__"),
        ("[1, 2]", "__all__"),
        (json.dumps({"channel": "sms", "body": "x", "contact": 999999}), "contact"),
        (json.dumps({"channel": "sms", "body": "x", "contact": "abc"}), "contact"),
        (json.dumps({"channel": "sms", "body": "x", "event": "{nope"}), "event"),
        (json.dumps({"channel": "sms", "body": "x", "event": "[1]"}), "event"),
        (json.dumps({"channel": "sms", "body": ["x"]}), "body"),
    ],
)
def test_bad_preview_requests_are_400_with_field_errors(admin_client, body, field):
    response = admin_client.post(PREVIEW, body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_preview_needs_a_channel(admin_client):
    answer = preview(admin_client, channel="", body="x")
    assert answer["errors"]["channel"] and answer["rendered"] is None


@pytest.mark.django_db
def test_preview_is_for_staff_with_the_view_template_permission(client):
    response = client.post(PREVIEW, "{}", content_type="application/json")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    customer = User.objects.create_user("customer", password="x")
    client.force_login(customer)
    response = client.post(PREVIEW, "{}", content_type="application/json")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    client.force_login(staff_user())
    response = client.post(PREVIEW, '{"channel": "sms", "body": "x"}', "application/json")
    assert response.status_code == 403


@pytest.mark.django_db
def test_picking_a_real_contact_needs_the_view_contact_permission(client):
    contact = ContactFactory()
    client.force_login(staff_user("messaging.view_template", "messaging.change_template"))
    assert preview(client, body="x")["rendered"]["text"] == "x"  # the sample contact is fine
    preview(client, status=403, body="x", contact=contact.pk)
    response = client.get(reverse("touchline-template-preview-contacts"))
    assert response.json() == {"contacts": []}


@pytest.mark.django_db
def test_preview_only_takes_post(admin_client):
    assert admin_client.get(PREVIEW).status_code == 405


@pytest.mark.django_db
def test_contact_picker_lists_the_newest_fifty(admin_client):
    contacts = ContactFactory.create_batch(52)
    response = admin_client.get(reverse("touchline-template-preview-contacts"))
    listed = [c["id"] for c in response.json()["contacts"]]
    assert len(listed) == 50
    assert listed[0] == contacts[-1].pk and contacts[0].pk not in listed


@pytest.mark.django_db
def test_template_change_page_carries_the_preview_panel(admin_client):
    template = TemplateFactory()
    response = admin_client.get(reverse("admin:messaging_template_change", args=[template.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="touchline-preview"' in page
    assert PREVIEW in page and send_test_url(template.pk) in page
    assert "touchline/template_preview.js" in page
    response = admin_client.get(reverse("admin:messaging_template_add"))
    assert 'id="touchline-preview"' in response.content.decode()
    assert "send-test" not in response.content.decode()


@pytest.mark.django_db
def test_template_page_shows_preview_to_editors_and_the_send_box_to_testers(client):
    template = TemplateFactory()
    url = reverse("admin:messaging_template_change", args=[template.pk])
    client.force_login(staff_user("messaging.view_template"))
    page = client.get(url).content.decode()
    assert 'id="touchline-preview"' not in page and "template_preview.js" not in page
    client.force_login(staff_user("messaging.change_template", username="editor"))
    page = client.get(url).content.decode()
    assert 'id="touchline-preview"' in page and send_test_url(template.pk) not in page
    mine = flagged_test_contact(phone="+14155552671")
    client.force_login(
        staff_user("messaging.change_template", "messaging.send_test_message", username="tester")
    )
    page = client.get(url).content.decode()
    assert send_test_url(template.pk) in page
    assert f'<option value="{mine.pk}">' in page


# --- Send test to me ------------------------------------------------------------------


def flagged_test_contact(owner: User | None = None, **fields) -> Contact:
    """A contact an administrator flagged as a test recipient (owned by `owner`)."""
    return ContactFactory(is_test=True, test_owner=owner, **fields)


@pytest.mark.django_db
def test_send_test_email_goes_through_the_pipeline_to_the_staff_member(
    admin_client, admin_user, simulator, django_capture_on_commit_callbacks
):
    admin_user.email, admin_user.first_name = "boss@example.com", "Bo"
    admin_user.save()
    template = TemplateFactory(
        channel="email",
        subject="Order {{ event.order_id }}",
        body="",
        html_body="<p>Hi {{ contact.first_name }}</p>",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            send_test_url(template.pk),
            json.dumps({"event": '{"order_id": "42"}'}),
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    answer = response.json()["message"]
    message = Message.objects.get(pk=answer["id"])
    assert message.source == "admin-test" and message.template == template
    assert message.to_address == "boss@example.com"
    contact = message.contact
    # The account's email became the user's own test contact (reused next time).
    assert (contact.is_test, contact.test_owner, contact.created_via) == (True, admin_user, "admin")
    assert Touchpoint.objects.filter(message=message, kind="queued", actor=admin_user).exists()
    [received] = simulator.messages()
    assert received["to"] == "boss@example.com"
    assert received["subject"] == "Order 42"
    message.refresh_from_db()
    assert message.status == "sent"
    # The answer was written before the test's transaction "committed" and ran delivery.
    assert answer["status"] == "queued"
    assert answer["url"] == reverse("admin:messaging_message_change", args=[message.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(send_test_url(template.pk), "{}", "application/json")
    assert response.status_code == 201
    assert Contact.objects.filter(is_test=True).count() == 1


@pytest.mark.django_db
def test_send_test_sms_goes_to_the_users_own_test_contact_never_a_typed_number(
    admin_client, admin_user, simulator, django_capture_on_commit_callbacks
):
    template = TemplateFactory(channel="sms", body="Test {{ event.order_id }}")
    url = send_test_url(template.pk)
    customer = ContactFactory(phone="+14155550100")
    # No test contact yet: nothing to send to, and a typed number is not accepted any more.
    response = admin_client.post(url, json.dumps({}), content_type="application/json")
    assert response.status_code == 400 and "contact" in response.json()["errors"]
    response = admin_client.post(url, json.dumps({"phone": customer.phone}), "application/json")
    assert response.status_code == 400 and "phone" in response.json()["errors"]
    # Naming a customer (not a test contact) is refused too.
    response = admin_client.post(url, json.dumps({"contact": customer.pk}), "application/json")
    assert response.status_code == 400 and "contact" in response.json()["errors"]
    assert not Message.objects.exists() and simulator.messages() == []

    someone_else = User.objects.create_user("other", is_staff=True)
    flagged_test_contact(owner=someone_else, phone="+14155552670")
    mine = flagged_test_contact(owner=admin_user, phone="+14155552671")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"event": '{"order_id": "7"}'})  # a form post works too
    assert response.status_code == 201, response.content
    assert Message.objects.get(source="admin-test").contact == mine
    # Any test contact can be picked by id (a shared test phone, a colleague's).
    shared = flagged_test_contact(phone="+14155552672")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, json.dumps({"contact": shared.pk}), "application/json")
    assert response.status_code == 201, response.content
    assert [m["to"] for m in simulator.messages()] == ["+14155552671", "+14155552672"]
    assert [m["body"] for m in simulator.messages()] == ["Test 7", "Test 1001"]


@pytest.mark.django_db
def test_send_test_email_needs_an_email_on_the_user(admin_client, admin_user):
    admin_user.email = ""
    admin_user.save()
    template = TemplateFactory(channel="email", subject="s", body="b")
    response = admin_client.post(send_test_url(template.pk), "{}", "application/json")
    assert response.status_code == 400
    assert "no email address" in response.json()["errors"]["contact"][0]
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_send_test_permissions_and_unknown_template(client, admin_client):
    template = TemplateFactory()
    response = client.post(send_test_url(template.pk), "{}", "application/json")
    assert response.status_code == 302
    # Seeing templates is not enough to send one (the hole issue 12 found).
    client.force_login(staff_user("messaging.view_template", "messaging.change_template"))
    flagged_test_contact(phone="+14155552671")
    response = client.post(send_test_url(template.pk), "{}", "application/json")
    assert response.status_code == 403
    response = admin_client.post(send_test_url(999999), "{}", "application/json")
    assert response.status_code == 404
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_the_send_test_service_refuses_a_contact_that_is_not_a_test_contact(admin_user):
    from messaging.services import MessageRequestError
    from messaging.staff_sends import staff_test_send

    template = TemplateFactory(channel="sms")
    customer = ContactFactory()
    customer.is_test = True  # stale or forged in memory: the database decides
    with pytest.raises(MessageRequestError) as raised:
        staff_test_send(template=template, contact=customer, actor_id=admin_user.pk)
    assert "contact" in raised.value.errors
    assert not Message.objects.exists()
