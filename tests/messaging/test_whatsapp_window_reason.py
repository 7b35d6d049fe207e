"""A WhatsApp message skipped outside the 24-hour window says why in terms of what was sent:
a free-form body is not allowed there (use an approved template); a template without an
approved content SID is named as such."""

from __future__ import annotations

import pytest

from messaging import services
from messaging.models import Touchpoint
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

FREEFORM_REASON = (
    "outside the WhatsApp 24-hour window: free-form messages are not allowed there; "
    "send an approved template (one with a content SID)"
)


@pytest.fixture
def contact():
    # Never wrote on WhatsApp: no window open.
    return ContactFactory(
        external_id="wa-1", whatsapp="+14155552671", last_inbound_whatsapp_at=None
    )


def test_a_free_form_message_outside_the_window_says_free_form_is_not_allowed(api, contact):
    response = api.post(
        "/api/v1/messages/",
        {"contact": {"external_id": "wa-1"}, "channel": "whatsapp", "body": "Hello there"},
        format="json",
    )
    assert response.status_code in (200, 201, 202), response.content
    message = contact.messages.get()
    assert message.status == "skipped"
    assert (message.error_code, message.error_message) == ("whatsapp_window", FREEFORM_REASON)
    skipped = Touchpoint.objects.get(message=message, kind="skipped")
    assert skipped.data["reason"] == FREEFORM_REASON
    assert response.json()["error_message"] == FREEFORM_REASON


def test_a_template_without_a_content_sid_outside_the_window_is_named(contact):
    template = TemplateFactory(slug="hello", channel="whatsapp", body="Hi", content_sid="")
    message, _ = services.message_create(contact=contact, channel="whatsapp", template=template)
    assert message.status == "skipped"
    assert message.error_message == (
        "outside the WhatsApp 24-hour window and the template has no approved content SID"
    )
