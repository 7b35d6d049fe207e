"""contact_upsert: an unchanged contact is read, never locked or written; a changed one gets
an UPDATE of what changed (and the address flags those changes reset)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Contact
from messaging.services import contact_upsert
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def upsert(external_id: str, data: dict) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        contact_upsert(external_id=external_id, data=data)
    return [q["sql"] for q in ctx.captured_queries]


def test_unchanged_contact_is_one_read():
    contact = ContactFactory(attributes={"plan": "pro"})
    same = {
        "email": contact.email.upper(),  # normalised before comparing
        "phone": contact.phone,
        "first_name": contact.first_name,
        "attributes": {"plan": "pro"},
    }
    sql = upsert(contact.external_id, same)
    assert len(sql) == 1 and sql[0].startswith("SELECT") and "FOR UPDATE" not in sql[0]


def test_a_change_writes_only_what_changed_and_resets_its_flag():
    contact = ContactFactory(phone_invalid=True, email_undeliverable=True)
    sql = upsert(contact.external_id, {"phone": "+14155550199", "email": contact.email})
    update = next(s for s in sql if s.startswith("UPDATE"))
    assert '"phone"' in update and '"phone_invalid"' in update
    assert '"email"' not in update and '"first_name"' not in update
    contact = Contact.objects.get(pk=contact.pk)
    assert contact.phone == "+14155550199"
    assert contact.phone_invalid is False
    assert contact.email_undeliverable is True  # its address did not change


def test_attributes_are_merged_and_a_null_removes_one():
    contact = ContactFactory(attributes={"plan": "pro", "seats": 3})
    contact_upsert(external_id=contact.external_id, data={"attributes": {"seats": None, "x": 1}})
    assert Contact.objects.get(pk=contact.pk).attributes == {"plan": "pro", "x": 1}
