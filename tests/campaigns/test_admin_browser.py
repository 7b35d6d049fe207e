"""A broadcast through a real browser (Playwright + Debian's Chromium), as a marketer works:
the form (segments, template family, channel order drop-downs, local time), the review page
(dry run, a test to their own test contact, the typed confirmation), launch, the send through
the provider simulator, and the report with its chart.

Screens go to .data/test/screenshots/ (TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots refreshes
the README's). Skipped when /usr/bin/chromium is missing (.ci/install-chromium)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from campaigns import services
from campaigns.models import Broadcast, BroadcastRecipient
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Message
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

from .ui_helpers import static_segment

pytestmark = [pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("TOUCHLINE_SCREENSHOTS_DIR", ".data/test/screenshots")
USERNAME, PASSWORD = "mara", "a-long-test-password-1"
CHARTS_DRAWN = """() => window.Chart && Object.keys(Chart.instances).length > 0
    && Object.values(Chart.instances).every((chart) => !Chart.animator.running(chart))"""


@pytest.fixture
def page(monkeypatch) -> Iterator[tuple[Page, list[str]]]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run .ci/install-chromium")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        try:
            yield page, errors
        finally:
            context.close()
            browser.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_a_marketer_schedules_a_broadcast_in_local_time_and_reads_the_report(
    live_server, simulator, page
):
    page, js_errors = page
    base = live_server.url
    ensure_staff_groups()
    mara = User.objects.create_user(USERNAME, "mara@example.com", PASSWORD, is_staff=True)
    mara.groups.add(Group.objects.get(name="Marketing"))
    for channel in ("sms", "email"):
        TemplateFactory(
            slug="winter", channel=channel, subject="Sale", body="Hi {{ contact.first_name }}!"
        )
    customers = [ContactFactory(timezone="Europe/London") for _ in range(3)]
    for contact in customers:
        ConsentFactory(contact=contact, channel="sms")
    unsubscribed = ContactFactory(timezone="Europe/London")
    ConsentFactory(contact=unsubscribed, channel="sms", status="unsubscribed")
    ConsentFactory(contact=unsubscribed, channel="email", status="unsubscribed")
    static_segment("customers", [*customers, unsubscribed])
    ContactFactory(phone="+14155550777", email="", is_test=True, test_owner=mara)
    # A minute ago on London's clock: due at once when launched (within the grace).
    local = timezone.now().astimezone(ZoneInfo("Europe/London")) - dt.timedelta(minutes=1)

    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#broadcasts-overview")).to_contain_text("No broadcasts yet")

    # 1. Build.
    page.goto(f"{base}/admin/campaigns/broadcast/add/")
    page.locator("#id_name").press_sequentially("Winter sale")
    expect(page.locator("#id_slug")).to_have_value("winter-sale")  # filled from the name
    page.locator("#id_segments_from option", has_text="Customers").dblclick()
    page.locator("#id_template_slug").select_option("winter")
    expect(page.locator("#id_template_slug")).to_contain_text("winter — Email, SMS")
    page.locator("#id_channel_order_0").select_option("sms")
    page.locator("#id_channel_order_1").select_option("email")
    page.locator("#id_send_mode_2").check()  # in each recipient's time zone
    page.locator("#id_local_send_date").fill(local.date().isoformat())
    page.locator("#id_local_send_time").fill(local.strftime("%H:%M:%S"))
    # No quiet hours (start = end): the test runs at any hour of the day.
    page.locator("#id_quiet_hours_start").fill("00:00")
    page.locator("#id_quiet_hours_end").fill("00:00")
    screenshot(page, "20-broadcast-form.png")
    page.locator("input[name=_review]").click()

    # 2. Review: the dry run.
    totals = page.locator("#dry-run-totals")
    expect(totals).to_contain_text("4 contact(s): 3 would be sent")
    expect(page.locator("#dry-run tr[data-channel=sms]")).to_contain_text(
        "1 — unsubscribed from this channel"
    )
    screenshot(page, "21-broadcast-review.png")

    # 3. Test, to Mara's own test contact only.
    page.locator("#send-test").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Test sent: sms")
    assert set(Message.objects.values_list("source", "to_address")) == {
        ("admin-test", "+14155550777"),  # SMS: her test contact
        ("admin-test", "mara@example.com"),  # email: her account's address
    }

    # 4. Launch: the name must be typed.
    page.locator("#id_confirm_name").fill("Summer sale")
    page.locator("#launch-form input[type=submit]").click()
    expect(page.locator("#launch-form .errorlist")).to_contain_text("Winter sale")
    assert Broadcast.objects.get().status == "draft"
    page.locator("#id_confirm_name").fill("Winter sale")
    page.locator("#launch-form input[type=submit]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("launched: 4 recipient(s)")
    broadcast = Broadcast.objects.get()
    assert broadcast.status == "sending"

    # 5. The dispatcher's tick (inline here) sends through the provider simulator.
    services.run_due(now=timezone.now())
    sent = simulator.messages(channel="sms", direction="outbound")
    assert sorted(m["to"] for m in sent) == sorted([*(c.phone for c in customers), "+14155550777"])
    assert BroadcastRecipient.objects.filter(state="sent").count() == 3
    assert BroadcastRecipient.objects.get(contact=unsubscribed).state == "skipped"

    # 6. The report, with its chart.
    page.goto(f"{base}/admin/campaigns/broadcast/{broadcast.pk}/report/")
    expect(page.locator("#broadcast-report-table tr[data-channel=sms]")).to_contain_text("3")
    page.wait_for_function(CHARTS_DRAWN)
    screenshot(page, "22-broadcast-report.png")
    # The broadcast's own page: read-only now, with its figures and chart.
    page.goto(f"{base}/admin/campaigns/broadcast/{broadcast.pk}/change/")
    expect(page.locator(".errornote")).to_contain_text("cannot be changed")
    expect(page.locator(".field-results")).to_contain_text("4 recipients · 3 sent")
    page.wait_for_function(CHARTS_DRAWN)
    screenshot(page, "23-broadcast-page.png")
    page.goto(f"{base}/admin/")
    expect(page.locator("#broadcasts-overview")).to_contain_text("Winter sale")
    assert js_errors == []
