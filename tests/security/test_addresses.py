"""Phone and WhatsApp numbers are valid E.164 numbers per `phonenumbers` wherever they enter
(issue 12 item 5): no extensions, no trailing garbage."""

from __future__ import annotations

import pytest

from messaging.models import Contact, Message

pytestmark = pytest.mark.django_db

BAD_NUMBERS = ["+14155552671x", "+14155552671 ext. 12", "+14155552671;ext=1", "+1-800-FLOWERS"]


def _error_fields(response) -> dict[str, str]:
    return {error["attr"]: error["detail"] for error in response.json()["errors"]}


@pytest.mark.parametrize("number", BAD_NUMBERS)
@pytest.mark.parametrize("field", ["phone", "whatsapp"])
def test_contacts_api_refuses_numbers_with_garbage_or_extensions(api, number, field):
    response = api.put("/api/v1/contacts/c-1/", {field: number}, format="json")
    assert response.status_code == 400, response.json()
    assert "E.164" in _error_fields(response)[field]
    assert not Contact.objects.exists()


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_events_nested_contact_refuses_them(api, number):
    response = api.post(
        "/api/v1/events/",
        {"name": "order.completed", "contact": {"external_id": "c-1", "phone": number}},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert "contact.phone" in _error_fields(response)
    assert not Contact.objects.exists()


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_messages_api_refuses_them(api, number):
    response = api.post(
        "/api/v1/messages/",
        {"contact": {"external_id": "c-1", "whatsapp": number}, "channel": "sms", "body": "hi"},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert "contact.whatsapp" in _error_fields(response)
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_formatted_numbers_are_still_accepted_and_stored_as_e164(api):
    response = api.put(
        "/api/v1/contacts/c-1/",
        {"phone": "+1 (415) 555-2671", "whatsapp": "whatsapp:+44 20 7183 8750"},
        format="json",
    )
    assert response.status_code in (200, 201), response.json()
    contact = Contact.objects.get(external_id="c-1")
    assert (contact.phone, contact.whatsapp) == ("+14155552671", "+442071838750")


def test_admin_contact_form_refuses_them(admin_client):
    response = admin_client.post(
        "/admin/messaging/contact/add/",
        {
            "external_id": "c-1",
            "phone": "+14155552671x",
            "timezone": "UTC",
            "attributes": "{}",
            "consents-TOTAL_FORMS": "0",
            "consents-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    form = response.context["adminform"].form
    assert "no extensions" in " ".join(form.errors["phone"])
    assert not Contact.objects.exists()
