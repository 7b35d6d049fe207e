"""Without Redis (the embedded default), a click outside any transaction (as in production,
where requests autocommit) is two statements: the link's read and the click's INSERT … ON
CONFLICT DO NOTHING; no BEGIN or COMMIT round trips, and the read never loads the message's
bodies. With Redis, a click on a link whose message committed is no statement at all."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging import services
from messaging.links import link_token
from messaging.models import Message, Touchpoint, TrackedLink
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_click_is_one_read_and_one_insert_in_autocommit(client, settings):
    settings.REDIS_URL = ""
    contact = ContactFactory(phone="+14155552671")
    message, _ = services.message_create(
        contact=contact, channel="sms", body="See https://shop.example/a " + "x" * 500
    )
    Message.objects.filter(pk=message.pk).update(sent_at=message.created_at - dt.timedelta(days=1))
    link = TrackedLink.objects.get(message=message)
    token = link_token(link.pk)
    assert connection.get_autocommit()
    with CaptureQueriesContext(connection) as ctx:
        first = client.get(f"/l/{token}", HTTP_USER_AGENT="Mozilla/5.0 (iPhone)")
        again = client.get(f"/l/{token}", HTTP_USER_AGENT="Mozilla/5.0 (iPhone)")
    assert first.status_code == again.status_code == 302
    statements = [q["sql"].split()[0] for q in ctx.captured_queries]
    assert statements == ["SELECT", "INSERT", "SELECT", "INSERT"], statements
    assert "body" not in ctx.captured_queries[0]["sql"]
    # The repeated click within the minute wrote nothing: one click.
    [click] = Touchpoint.objects.filter(kind="clicked")
    assert click.message_id == message.pk
    assert click.created_at is not None
