"""A campaign, step by step, through a real browser — issue 13's "Done when": a marketer (the
Marketing group, not a superuser) imports a CSV, builds a segment and sees its count, writes
an SMS + email template family, schedules a broadcast in each contact's local time, watches
it go out through the provider simulator (a real Celery worker sends; signed callbacks
deliver) and reads the report.

The send time is "a couple of minutes ago" on Makassar's clock (UTC+8): the Makassar
contacts are due at launch, the Jakarta ones (UTC+7) wait for the same wall-clock time an hour
later — so nothing waits on the clock and the local-time schedule is visible.

Screens go to .data/test/screenshots/ (`TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots`
refreshes the README's pictures); skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from audiences.import_models import ContactImport
from audiences.models import Segment
from campaigns import services
from campaigns.models import Broadcast, BroadcastRecipient
from campaigns.tasks import dispatch_due
from journeys.staff_groups import ensure_staff_groups
from messaging.models import ConsentChange, Contact, Message, Template
from tests.e2e.test_browser import (  # noqa: F401  (fixtures)
    CHARTS_DRAWN,
    js_errors,
    live_stack,
    page,
    screenshot,
    wait_for,
)
from tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

USERNAME, PASSWORD = "mara", "a-long-test-password-1"
TEST_PHONE = "+14155550777"  # Mara's own test contact ("Send me a test")
CONSENT_SOURCE = "imported from the Makassar pop-up store opt-in, 2026-11"
CSV = """external_id,first_name,email,phone,timezone,city,consent.sms,consent.email
mk-1,Dewi,dewi@example.com,+6281234560001,Asia/Makassar,Makassar,subscribed,subscribed
mk-2,Rudi,rudi@example.com,+6281234560002,Asia/Makassar,Makassar,subscribed,
mk-3,Sari,sari@example.com,,Asia/Makassar,Makassar,,subscribed
mk-4,Agus,agus@example.com,+6281234560004,Asia/Makassar,Makassar,unsubscribed,unsubscribed
jk-1,Putri,putri@example.com,+6281234560011,Asia/Jakarta,Jakarta,subscribed,subscribed
jk-2,Budi,budi@example.com,+6281234560012,Asia/Jakarta,Jakarta,subscribed,
jk-3,Ayu,ayu@example.com,0812-CALL-AYU,Asia/Jakarta,Jakarta,subscribed,
ld-1,Oliver,oliver@example.com,+447911123456,Europe/London,London,subscribed,
ld-2,Amelia,amelia@example.com,,Europe/London,London,,subscribed
ld-3,Harry,harry@example.com,+447911123458,Europe/London,London,subscribed,subscribed
"""
DEFINITION = {"all": [{"attribute": "city", "op": "in", "value": ["Jakarta", "Makassar"]}]}
SMS_BODY = "Hi {{ contact.first_name }}, our rainy-season sale starts today!"
EMAIL_BODY = "Hi {{ contact.first_name }}, everything is 20% off this week."


def marketer() -> User:
    ensure_staff_groups()
    user = User.objects.create_user(
        USERNAME, "mara@example.com", PASSWORD, is_staff=True, first_name="Mara"
    )
    user.groups.add(Group.objects.get(name="Marketing"))
    return user


def test_a_campaign_from_csv_to_report(live_stack, page: Page, js_errors, tmp_path):  # noqa: F811
    base, sim, _ = live_stack
    expect.set_options(timeout=15_000)
    mara = marketer()
    assert not mara.is_superuser
    ContactFactory(first_name="Mara", phone=TEST_PHONE, email="", is_test=True, test_owner=mara)

    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    # 1. Audiences → Contact imports → Add: upload, validate, run.
    csv_file = tmp_path / "rainy-season.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    page.get_by_role("link", name="Contact imports").click()
    page.get_by_role("link", name=re.compile("Add contact import")).click()
    page.locator("#id_file").set_input_files(str(csv_file))
    page.locator("#id_mapping").fill('{"city": "attributes.city"}')
    page.locator("#id_consent_source").fill(CONSENT_SOURCE)
    page.locator("input[name=_continue]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    contact_import = ContactImport.objects.get()
    assert contact_import.status == "uploaded"
    panel = page.locator("#import-panel")
    panel.get_by_role("button", name="Validate").click()
    # The worker validates; the page polls and reloads when it is done.
    expect(panel.get_by_role("button", name="Run import")).to_be_visible(timeout=30_000)
    summary = page.locator(".field-validation_summary")
    expect(summary).to_contain_text("10 rows: 9 would be created, 0 updated")
    bad_phone = summary.locator("tbody tr", has_text="phone")
    expect(bad_phone).to_have_count(1)
    expect(bad_phone.locator("td").first).to_have_text("8")  # the header is line 1
    assert not Contact.objects.filter(created_via="import").exists()  # a dry run
    panel.get_by_role("button", name="Run import").click()
    expect(page.locator("#import-status")).to_contain_text(
        re.compile(r"^Completed\b"), timeout=30_000
    )
    expect(page.locator("#import-progress")).to_have_js_property("value", 1)
    contact_import.refresh_from_db()
    assert (contact_import.status, contact_import.created_count) == ("completed", 9)
    assert contact_import.error_count == 1
    imported = Contact.objects.filter(created_via="import")
    assert imported.count() == 9
    assert not imported.filter(external_id="jk-3").exists()
    dewi = imported.get(external_id="mk-1")
    assert (dewi.phone, dewi.timezone, dewi.attributes) == (
        "+6281234560001",
        "Asia/Makassar",
        {"city": "Makassar"},
    )
    ledger = ConsentChange.objects.filter(contact__created_via="import", source="import")
    assert ledger.count() == 13  # one row per consent cell of the 9 imported rows
    assert set(ledger.values_list("note", flat=True)) == {CONSENT_SOURCE}
    screenshot(page, "07-contact-import.png")
    # The error report: the refused row, by line and column.
    link = page.get_by_role("link", name="Download the error report (CSV)")
    with page.expect_download() as download:
        link.click()
    errors_csv = Path(download.value.path()).read_text(encoding="utf-8")
    assert re.search(r"^8,phone,", errors_csv, re.MULTILINE), errors_csv

    # 2. Audiences → Segments → Add: the live count and sample follow the definition.
    page.goto(f"{base}/admin/audiences/segment/add/")
    status = page.locator("#segment-live-status")
    expect(status).to_contain_text("10 contacts match now")  # the default: everyone
    page.locator("#id_name").fill("Rainy season: Jakarta and Makassar")
    page.locator("#id_slug").fill("rainy-season")
    builder = page.locator("#segment-visual-builder")
    builder.get_by_role("button", name="Add a condition").click()
    row = builder.locator(".segment-builder-row").nth(0)
    row.locator('[data-name="kind"]').select_option("attribute")
    row.locator('[data-name="attribute"]').fill("city")
    row.locator('[data-name="op"]').select_option("in")
    row.locator('[data-name="value"]').fill("Jakarta, Makassar")
    expect(status).to_contain_text("6 contacts match now")
    assert json.loads(page.locator("#id_definition").input_value()) == DEFINITION
    sample = page.locator("#segment-live-sample")
    for name in ("Dewi", "Rudi", "Sari", "Agus", "Putri", "Budi"):
        expect(sample).to_contain_text(name)
    expect(sample).not_to_contain_text("Oliver")  # London
    screenshot(page, "08-segment-builder.png")
    page.locator("input[name=_continue]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    expect(page.locator(".field-size_over_time")).to_contain_text("6 members now")
    segment = Segment.objects.get(slug="rainy-season")
    assert set(segment.memberships.values_list("contact__external_id", flat=True)) == {
        "mk-1",
        "mk-2",
        "mk-3",
        "mk-4",
        "jk-1",
        "jk-2",
    }

    # 3. The template family: one slug, an SMS and an email.
    for channel, subject, body in (
        ("sms", "", SMS_BODY),
        ("email", "Rainy-season sale", EMAIL_BODY),
    ):
        page.goto(f"{base}/admin/messaging/template/add/")
        page.locator("#id_name").fill(f"Rainy season ({channel})")
        page.locator("#id_slug").fill("rainy-season")
        page.locator("#id_channel").select_option(channel)
        if subject:
            page.locator("#id_subject").fill(subject)
        page.locator("#id_body").fill(body)
        page.locator("input[name=_save]").click()
        expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    assert set(Template.objects.filter(slug="rainy-season").values_list("channel", flat=True)) == {
        "sms",
        "email",
    }

    # 4. Campaigns → Broadcasts → Add, in each contact's local time.
    makassar = timezone.now().astimezone(ZoneInfo("Asia/Makassar")) - dt.timedelta(minutes=2)
    page.goto(f"{base}/admin/campaigns/broadcast/add/")
    page.locator("#id_name").press_sequentially("Rainy season sale")
    expect(page.locator("#id_slug")).to_have_value("rainy-season-sale")
    page.locator("#id_segments_from option", has_text="Rainy season").dblclick()
    page.locator("#id_template_slug").select_option("rainy-season")
    page.locator("#id_channel_order_0").select_option("sms")
    page.locator("#id_channel_order_1").select_option("email")
    page.locator("#id_send_mode_2").check()  # in each recipient's time zone
    page.locator("#id_local_send_date").fill(makassar.date().isoformat())
    page.locator("#id_local_send_time").fill(makassar.strftime("%H:%M:%S"))
    page.locator("#id_quiet_hours_start").fill("00:00")  # no quiet hours: any hour of the day
    page.locator("#id_quiet_hours_end").fill("00:00")
    page.locator("input[name=_review]").click()

    # The review: the dry run per channel, a test to Mara only, the typed confirmation.
    expect(page.locator("#dry-run-totals")).to_contain_text("6 contact(s): 5 would be sent")
    expect(page.locator("#dry-run tr[data-channel=sms] td").nth(2)).to_have_text("4")
    expect(page.locator("#dry-run tr[data-channel=email] td").nth(2)).to_have_text("1")
    expect(page.locator("#dry-run-skipped")).to_contain_text("1 — unsubscribed from this channel")
    expect(page.locator("#broadcast-summary")).to_contain_text("in each contact's own time zone")
    screenshot(page, "09-broadcast-review.png")
    page.locator("#send-test").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Test sent")
    assert set(Message.objects.values_list("source", "to_address")) == {
        ("admin-test", TEST_PHONE),
        ("admin-test", "mara@example.com"),
    }
    assert [m["body"] for m in sim.messages(to=TEST_PHONE)] == [
        "Hi Mara, our rainy-season sale starts today!"
    ]
    page.locator("#id_confirm_name").fill("Rainy season sale")
    page.locator("#launch-form input[type=submit]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("launched: 6 recipient(s)")
    broadcast = Broadcast.objects.get()
    assert broadcast.status == "sending"
    recipients = BroadcastRecipient.objects.filter(broadcast=broadcast)
    due_at = services.local_instant(broadcast.local_send_date, broadcast.local_send_time, "UTC")
    makassar_at = due_at - dt.timedelta(hours=8)
    # Jakarta's clock is an hour behind Makassar's: the same wall-clock time, an hour later.
    assert {
        r.contact.external_id: r.send_after
        for r in recipients.filter(contact__timezone="Asia/Jakarta").select_related("contact")
    } == {"jk-1": makassar_at + dt.timedelta(hours=1), "jk-2": makassar_at + dt.timedelta(hours=1)}

    # 5. The dispatcher (a beat task; called here as beat would) claims who is due, and the
    # worker sends them through the simulator; its callbacks deliver them.
    def makassar_done() -> bool:
        dispatch_due()
        return not recipients.filter(
            contact__timezone="Asia/Makassar", state__in=("pending", "held")
        ).exists()

    wait_for("the Makassar recipients to be sent", makassar_done)
    wait_for(
        "the broadcast's messages to be delivered",
        lambda: Message.objects.filter(
            broadcast_recipient__broadcast=broadcast, status="delivered"
        ).count()
        == 3,
    )
    assert set(recipients.filter(state="sent").values_list("contact__external_id", "channel")) == {
        ("mk-1", "sms"),
        ("mk-2", "sms"),
        ("mk-3", "email"),
    }
    assert recipients.get(contact__external_id="mk-4").state == "skipped"  # consent
    assert set(
        recipients.filter(state="pending").values_list("contact__external_id", flat=True)
    ) == {
        "jk-1",
        "jk-2",
    }
    outbound = sim.messages(direction="outbound")
    to_customers = sorted(
        m["to"] for m in outbound if m["to"] not in (TEST_PHONE, "mara@example.com")
    )
    assert to_customers == ["+6281234560001", "+6281234560002", "sari@example.com"]
    # A marketing SMS ends with the opt-out line (SMS_STOP_LINE); the test send above did not.
    assert [m["body"] for m in sim.messages(to="+6281234560001")] == [
        "Hi Dewi, our rainy-season sale starts today!\nReply STOP to opt out"
    ]
    page.goto(f"{sim.url}/")
    expect(page.locator("article.card", has_text="+6281234560002")).to_contain_text(
        "Hi Rudi, our rainy-season sale starts today!"
    )
    expect(page.locator("article.card", has_text="sari@example.com")).to_contain_text(
        "Rainy-season sale"
    )
    screenshot(page, "11-simulator.png")

    # 6. The report: per channel, as the database has it, and the chart.
    page.goto(f"{base}/admin/campaigns/broadcast/{broadcast.pk}/change/")
    page.get_by_role("link", name="Report", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/broadcast/{broadcast.pk}/report/$"))
    table = page.locator("#broadcast-report-table")
    for channel in ("sms", "email"):
        on_channel = recipients.filter(channel=channel)
        expected = [
            channel,
            str(on_channel.count()),
            str(on_channel.filter(state="sent").count()),
            str(on_channel.filter(message__status="delivered").count()),
        ]
        cells = table.locator(f"tr[data-channel={channel}] td")
        expect(cells.nth(0)).to_have_text(expected[0])
        assert cells.all_inner_texts()[:4] == expected
    assert [
        table.locator(f"tr[data-channel={c}] td").nth(3).inner_text() for c in ("sms", "email")
    ] == ["2", "1"]
    expect(table.locator("tfoot th").nth(1)).to_have_text("6")
    # Jakarta's two and Agus (unsubscribed everywhere) have no channel.
    expect(table.locator("tr[data-channel=none] td").nth(0)).to_contain_text("not sent yet")
    expect(table.locator("tr[data-channel=none] td").nth(1)).to_have_text("3")
    expect(page.locator("#broadcast-states")).to_contain_text("pending: 2")
    expect(page.locator("#broadcast-states")).to_contain_text("sent: 3")
    page.wait_for_function(CHARTS_DRAWN)
    screenshot(page, "10-broadcast-report.png")
    # Every recipient and what happened: Jakarta's two wait for their local time.
    page.get_by_role("link", name="every recipient and what happened").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(6)
    waiting = rows.filter(has=page.locator("td.field-state", has_text="Pending"))
    expect(waiting).to_have_count(2)
    assert sorted(
        waiting.locator("td.field-contact_link, th.field-contact_link").all_inner_texts()
    ) == [
        "Budi",
        "Putri",
    ]
    assert js_errors == []
