"""The staff workspace through a real browser (Playwright + Debian's Chromium).

One scenario, as a marketing and support staff member works: a contact and an SMS template
(live preview, a Liquid error with its line), a two-step journey built in the admin, a dry
run, activation, an event through the API that a real Celery worker sends to the provider
simulator (delivered by signed callbacks), the contact's timeline, and the inbox.

Screens of the key pages are saved into .data/test/screenshots/ (a test run leaves the tracked
files alone); `TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots make test ARGS=tests/e2e/test_browser.py`
refreshes the README's pictures. Chromium comes from apt
(`.ci/install-chromium`); the test is skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from celery.contrib.testing.worker import start_worker
from django.contrib.auth.models import Group, Permission, User
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from playwright.sync_api import Page, expect, sync_playwright

from channels_app.simulator import start_simulator
from config.celery import app as celery_app
from journeys.models import Enrollment, Journey
from journeys.staff_groups import ensure_staff_groups
from messaging.models import Contact, Conversation, Message
from tests.conftest import _simulator_config

pytestmark = [pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("TOUCHLINE_SCREENSHOTS_DIR", ".data/test/screenshots")
WORKER_TIMEOUT = 30.0  # seconds for what the Celery worker and the simulator do

USERNAME, PASSWORD = "mara", "a-long-test-password-1"
PHONE = "+14155552671"
GOOD_BODY = "Hi {{ contact.first_name }}, welcome!"
# Line 2 opens an `if` that is never closed.
BROKEN_BODY = "Hi {{ contact.first_name }},\n{% if contact.first_name %}welcome!"
CUSTOMER_QUESTION = "Can I change my address?"
STAFF_ANSWER = "Of course, Ada: reply with the new address and we will update it."
CHARTS_DRAWN = """() => window.Chart && Object.keys(Chart.instances).length > 0
    && Object.values(Chart.instances).every((chart) => !Chart.animator.running(chart))"""


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WORKER_TIMEOUT) -> Any:
    """Poll `probe` until it returns something truthy (worker- and callback-driven state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            messages = list(Message.objects.values_list("direction", "status", "body"))
            pytest.fail(f"Timed out after {timeout:.0f}s waiting for {what}; messages: {messages}")
        time.sleep(0.1)


@pytest.fixture
def live_stack(live_server, settings, api_key):
    """A live web server, a simulator calling it back, and a real Celery worker."""
    settings.PUBLIC_BASE_URL = live_server.url
    sim = start_simulator(_simulator_config(live_server.url, callbacks=True), port=0)
    settings.TWILIO_API_BASE_URL = sim.url
    settings.SENDGRID_API_HOST = sim.url
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.control.purge()
    try:
        with start_worker(
            celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
        ):
            yield live_server.url, sim, api_key
    finally:
        sim.stop()


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught JavaScript errors of every page the browser opened."""
    return []


@pytest.fixture
def page(monkeypatch, js_errors: list[str]) -> Iterator[Page]:
    """A 1280x900 Chromium page (Debian's Chromium, headless)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run .ci/install-chromium")
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django would take
    # the test's own ORM calls (checking what the worker did) for async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("pageerror", lambda exc: js_errors.append(f"{page.url}: {exc}"))
        try:
            yield page
        finally:
            context.close()
            browser.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def staff_member() -> User:
    """Marketing (templates, journeys) and Support (inbox, contacts); not a superuser."""
    ensure_staff_groups()
    user = User.objects.create_user(
        USERNAME, "mara@example.com", PASSWORD, is_staff=True, first_name="Mara"
    )
    user.groups.add(*Group.objects.filter(name__in=["Marketing", "Support"]))
    # Neither group may add contacts (they normally arrive through the API); this walk-through
    # starts by adding one by hand, as the README does.
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="messaging", codename="add_contact")
    )
    return user


def test_staff_workspace_in_a_browser(live_stack, page: Page, js_errors: list[str]):
    base, sim, key = live_stack
    expect.set_options(timeout=15_000)
    staff_member()
    problems: list[str] = []  # product behaviour checked without stopping the walk-through

    # 1. Sign in.
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    # 2a. A contact, added in the admin.
    page.goto(f"{base}/admin/messaging/contact/add/")
    page.locator("#id_external_id").fill("cust-ada")
    page.locator("#id_first_name").fill("Ada")
    page.locator("#id_last_name").fill("Lovelace")
    page.locator("#id_email").fill("ada@example.com")
    page.locator("#id_phone").fill(PHONE)
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    contact = Contact.objects.get(external_id="cust-ada")
    assert contact.phone == PHONE

    # 2b. An SMS template, previewed live (unsaved) for that contact.
    page.goto(f"{base}/admin/messaging/template/add/")
    page.locator("#id_name").fill("Welcome SMS")
    page.locator("#id_slug").fill("welcome-sms")
    page.locator("#id_channel").select_option("sms")
    page.locator("#id_body").fill(GOOD_BODY)
    preview = page.locator("#touchline-preview")
    output, status = (
        preview.locator("#touchline-preview-output"),
        preview.locator("#touchline-preview-status"),
    )
    preview.locator("#touchline-preview-contact").select_option(str(contact.pk))
    expect(output).to_contain_text("Hi Ada, welcome!")
    expect(status).to_contain_text("Rendered for Ada Lovelace")
    screenshot(page, "01-template-preview.png")
    # A Liquid error shows next to the body, with its line, while typing…
    page.locator("#id_body").fill(BROKEN_BODY)
    expect(page.locator(".field-body .touchline-generated-errors")).to_contain_text(
        re.compile(r"line 2\b")
    )
    expect(status).to_contain_text("Fix the errors")
    # …and such a template cannot be saved: the form error names the line too.
    page.locator("input[name=_continue]").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-body ul.errorlist").first).to_contain_text(re.compile(r"line 2\b"))
    page.locator("#id_body").fill(GOOD_BODY)
    expect(output).to_contain_text("Hi Ada, welcome!")
    expect(page.locator(".field-body .touchline-generated-errors")).to_have_count(0)
    page.locator("input[name=_continue]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    # The saved template's page previews it too.
    expect(output).to_contain_text("Hi Ada, welcome!")

    # 3. A two-step journey: send the template by SMS, then wait a day.
    page.goto(f"{base}/admin/journeys/journey/add/")
    page.locator("#id_name").fill("Welcome by SMS")
    page.locator("#id_slug").fill("welcome-by-sms")
    page.locator("#id_trigger_event").fill("demo.signup")
    page.locator("#id_category").select_option("transactional")
    add_step = page.get_by_role("button", name="Add another Step")
    add_step.click()
    send = page.locator("#steps-0")
    send.locator("[name=steps-0-key]").fill("welcome")
    send.locator("[name=steps-0-kind]").select_option("send")
    # Only the chosen kind's fields are shown (journeys/static/journeys/step_form.js).
    for field, visible in (
        ("channel", True),
        ("template", True),
        ("fallback_channels", True),
        ("duration", False),
        ("event", False),
        ("rules", False),
    ):
        row = send.locator(f".field-{field}")
        try:
            if visible:
                expect(row).to_be_visible(timeout=3_000)
            else:
                expect(row).to_be_hidden(timeout=3_000)
        except AssertionError:
            problems.append(
                f"journey builder: a 'send' step's {field} field is "
                f"{'hidden' if visible else 'shown'} (step_form.js should show only its kind's)"
            )
    send.locator("[name=steps-0-channel]").select_option("sms")
    send.locator("[name=steps-0-template]").fill("welcome-sms")
    for box in send.locator("[name=steps-0-fallback_channels]").all():
        box.uncheck()
    add_step.click()
    wait = page.locator("#steps-1")
    wait.locator("[name=steps-1-key]").fill("pause")
    wait.locator("[name=steps-1-kind]").select_option("wait")
    try:
        expect(wait.locator(".field-channel")).to_be_hidden(timeout=3_000)
        expect(wait.locator(".field-duration")).to_be_visible(timeout=3_000)
    except AssertionError:
        problems.append("journey builder: a 'wait' step does not show only its own fields")
    wait.locator("[name=steps-1-duration]").fill("1d")
    page.locator("input[name=_continue]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    expect(page.locator(".errornote")).to_have_count(0)  # nothing stops activation
    journey = Journey.objects.get(slug="welcome-by-sms")
    steps = list(journey.steps.values_list("key", "kind", "config"))
    assert steps == [
        ("welcome", "send", {"channel": "sms", "template": "welcome-sms", "fallback_channels": []}),
        ("pause", "wait", {"duration_seconds": 86400}),
    ]
    screenshot(page, "02-journey-builder.png")

    # 4. Dry run for the contact: nothing is sent, the timeline shows what would be.
    page.get_by_role("link", name="Dry run").click()
    page.locator("#id_contact").fill(str(contact.pk))
    page.locator("#dryrun-form").get_by_role("button", name="Dry run").click()
    send_line = page.locator("#dryrun-timeline tbody tr", has_text="sends SMS")
    expect(send_line).to_have_count(1)
    expect(send_line).to_contain_text("Hi Ada, welcome!")
    expect(send_line).to_contain_text(PHONE)
    screenshot(page, "03-dry-run.png")
    assert not Message.objects.exists()

    # 5. Activate from the change list.
    page.goto(f"{base}/admin/journeys/journey/")
    row = page.locator("#result_list tbody tr", has_text="Welcome by SMS")
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Activate (after checking the journey)")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("Welcome by SMS (v1) is live.")
    expect(row.locator("td.field-status")).to_have_text("Active")
    journey.refresh_from_db()
    assert journey.status == Journey.Status.ACTIVE

    # 6. The shop's backend fires the event; the worker sends, the simulator delivers.
    response = requests.post(
        f"{base}/api/v1/events/",
        json={"name": "demo.signup", "contact": {"external_id": "cust-ada"}},
        headers={"Authorization": f"Api-Key {key}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["processed_at"] is None  # stored; a worker applies it
    event_url = f"{base}/api/v1/events/{response.json()['id']}/"

    def applied():
        event = requests.get(event_url, headers={"Authorization": f"Api-Key {key}"}, timeout=10)
        return event.json() if event.json()["processed_at"] else None

    event = wait_for("the worker to apply the event", applied)
    assert [e["journey"] for e in event["enrolled"]] == ["welcome-by-sms"]
    message = wait_for(
        "the journey's SMS to be delivered",
        lambda: Message.objects.filter(contact=contact, status="delivered").first(),
    )
    assert message.body == "Hi Ada, welcome!"
    assert [m["body"] for m in sim.messages(to=PHONE, direction="outbound")] == ["Hi Ada, welcome!"]
    wait_for(
        "the enrollment to wait at the second step",
        lambda: Enrollment.objects.filter(
            journey=journey, contact=contact, state="waiting", current_step__key="pause"
        ).exists(),
    )

    # 7. The contact's page: the message on the timeline, the journey under Active journeys.
    page.goto(f"{base}/admin/messaging/contact/{contact.pk}/change/")
    timeline = page.locator("table.touchline-timeline")
    for kind in ("sent", "delivered"):
        expect(
            timeline.locator("tbody tr", has=page.locator(f"td:text-is('{kind}')"))
        ).to_have_count(1)
    active = page.locator(".inline-group", has_text="Active journeys")
    expect(active).to_contain_text("Welcome by SMS")
    expect(active).to_contain_text("Waiting")
    screenshot(page, "04-contact-timeline.png")
    page.get_by_role("link", name="Full timeline", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/contacts/{contact.pk}/timeline/"))
    page.locator("#timeline-filter select[name=channel]").select_option("sms")
    page.locator("#timeline-filter").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]channel=sms\b"))
    channels = page.locator("#timeline tbody tr td:nth-child(2)")
    expect(channels.first).to_have_text("SMS")
    assert set(channels.all_inner_texts()) == {"SMS"}
    kinds = set(page.locator("#timeline tbody tr td:nth-child(4)").all_inner_texts())
    assert {"queued", "sent", "delivered"} <= kinds, kinds

    # 8. The customer replies; support answers from the inbox and resolves.
    answer = sim.reply("sms", PHONE, CUSTOMER_QUESTION)
    assert answer.status_code == 200, answer.text
    page.goto(f"{base}/admin/touchline/inbox/")
    waiting = page.locator("#inbox tbody tr", has_text=CUSTOMER_QUESTION)
    expect(waiting).to_contain_text("Ada Lovelace")
    expect(waiting).to_contain_text("Needs a reply")
    waiting.get_by_role("link", name="Ada Lovelace").click()
    expect(page.locator("#conversation-status")).to_have_text(re.compile(r"^Open\b"))
    assert Conversation.objects.get(contact=contact).status == Conversation.Status.OPEN
    expect(page.locator("#thread .msg.inbound")).to_contain_text(CUSTOMER_QUESTION)
    reply_form = page.locator("#reply-form")
    expect(reply_form.locator("select[name=channel]")).to_have_value("sms")
    reply_form.locator("textarea[name=body]").fill(STAFF_ANSWER)
    reply_form.get_by_role("button", name="Send reply").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Reply")
    wait_for(
        "the simulator to receive the staff reply",
        lambda: any(
            m["body"] == STAFF_ANSWER for m in sim.messages(to=PHONE, direction="outbound")
        ),
    )
    wait_for(
        "the staff reply to be delivered",
        lambda: Message.objects.filter(body=STAFF_ANSWER, status="delivered").exists(),
    )
    page.reload()
    expect(page.locator("#thread .msg.outbound").last).to_contain_text(STAFF_ANSWER)
    expect(page.locator("#thread .msg.outbound").last).to_contain_text("delivered")
    screenshot(page, "05-inbox-conversation.png")
    page.get_by_role("button", name="Mark resolved").click()
    expect(page).to_have_url(re.compile(r"/admin/touchline/inbox/$"))
    expect(page.locator("#inbox tbody")).to_contain_text("No conversation needs a reply.")
    assert Conversation.objects.get(contact=contact).status == Conversation.Status.RESOLVED

    # 9. The journey's dashboard, once that page exists.
    try:
        get_template("admin/journeys/journey/dashboard.html")
    except TemplateDoesNotExist:
        pass
    else:
        page.goto(f"{base}/admin/journeys/journey/{journey.pk}/change/")
        page.get_by_role("link", name="Dashboard", exact=True).click()
        expect(page).to_have_url(re.compile(rf"/admin/touchline/journeys/{journey.pk}/dashboard/$"))
        board = page.locator("#touchline-dashboard")
        expect(board.locator("[data-status]")).to_contain_text("Updated")
        expect(board.locator("[data-enrollments]")).to_contain_text("Entered 1")
        expect(board.locator("[data-funnel-table]")).to_contain_text("welcome")
        page.wait_for_function(CHARTS_DRAWN)  # Chart.js animations over, for the screenshot
        screenshot(page, "06-dashboard.png")

    problems.extend(f"uncaught JavaScript error: {error}" for error in js_errors)
    assert not problems, "\n".join(problems)
