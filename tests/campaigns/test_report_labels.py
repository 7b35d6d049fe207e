"""The report's row for recipients without a channel names every state it holds: recipients
waiting for their (local) send time have no channel yet either, and were labelled as if they
had been skipped or had failed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import BroadcastRecipient

from .test_admin_broadcasts import audience, marketer  # noqa: F401  (fixtures)
from .ui_helpers import broadcast

pytestmark = [pytest.mark.django_db]


def test_recipients_still_to_send_are_not_labelled_skipped(client, marketer, audience):  # noqa: F811
    b = broadcast([audience], status="sending")
    contact = audience.memberships.first().contact
    BroadcastRecipient.objects.create(
        broadcast=b, contact=contact, send_after=b.created_at, updated_at=b.created_at
    )
    page = client.get(reverse("admin:campaigns_broadcast_report", args=[b.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    row = html[html.index('<tr data-channel="none">') :].split("</tr>")[0]
    assert "not sent yet" in row
    assert "<td>1</td>" in row
