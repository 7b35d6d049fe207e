"""What campaigns registers with the apps below it: a template a broadcast may still send is
not deleted, and segments can select on a broadcast's messages."""

from __future__ import annotations

import pytest

from audiences.definition import DefinitionError, definition_validate
from campaigns.models import Broadcast, BroadcastRecipient
from messaging.models import Message
from messaging.template_usage import template_users
from tests.audiences.conftest import NOW, message
from tests.audiences.test_conditions import matching

from .broadcast_fixtures import draft, people, static_segment, templates

pytestmark = pytest.mark.django_db


def test_a_template_a_broadcast_may_send_is_in_use():
    templates("promo", ("sms", "email", "whatsapp"))
    sms_only = draft([static_segment([])], slug="sms-sale", channel_order=["sms"])
    assert template_users(slug="promo", channel="sms") == ["broadcast “sms-sale” (draft)"]
    # not on a channel it never tries…
    assert template_users(slug="promo", channel="email") == []
    # …"preferred" may be any channel…
    draft([static_segment([])], slug="pref", channel_order=["preferred"])
    assert template_users(slug="promo", channel="whatsapp") == ["broadcast “pref” (draft)"]
    # …and a finished broadcast uses nothing any more.
    Broadcast.objects.filter(pk=sms_only.pk).update(status=Broadcast.Status.COMPLETED)
    assert template_users(slug="promo", channel="sms") == ["broadcast “pref” (draft)"]


def test_segments_select_on_a_broadcasts_messages():
    ana, ben, cy = people(3)
    sale = draft([static_segment([ana, ben, cy])], slug="sale")
    other = draft([static_segment([cy])], slug="other")
    for contact, broadcast, status in (
        (ana, sale, "delivered"),
        (ben, sale, "failed"),
        (cy, other, "delivered"),
    ):
        sent: Message = message(contact, status, channel="sms", to_address=contact.phone)
        BroadcastRecipient.objects.create(
            broadcast=broadcast,
            contact=contact,
            state="sent",
            send_after=NOW,
            updated_at=NOW,
            channel="sms",
            message=sent,
        )
    assert matching({"engagement": "delivered", "broadcast": "sale"}) == {ana.external_id}
    assert matching({"engagement": "received", "broadcast": "other"}) == {cy.external_id}
    with pytest.raises(DefinitionError) as refused:
        definition_validate({"engagement": "received", "broadcast": "nope"}, slug="x", others={})
    assert "broadcast" in refused.value.errors
    assert "No broadcast" in refused.value.errors["broadcast"][0]
