"""The preference center through a real browser (issue 14): a marketing email goes out through
the provider simulator (a real Celery worker sends it); the customer opens the "Manage
preferences" link it carries, on a phone-sized screen with JavaScript off, unsubscribes from
one topic and from SMS, and saves. The consent ledger has exactly those two changes. With the
page still open, an email one-click unsubscribe elsewhere is not undone by saving it again.

Screens go to .data/test/screenshots/ (`TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots`
refreshes the README's pictures); skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from messaging import services
from messaging.models import ConsentChange, Topic, TopicSubscription
from messaging.policies import consent_status
from tests.e2e.test_browser import (  # noqa: F401  (fixtures)
    js_errors,
    live_stack,
    page,
    screenshot,
    wait_for,
)
from tests.factories import ConsentFactory, ContactFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

EMAIL = "dewi@example.com"


def test_a_customer_manages_preferences_from_an_email(live_stack, page: Page):  # noqa: F811
    base, sim, _ = live_stack
    expect.set_options(timeout=15_000)
    news = Topic.objects.create(
        slug="news", name="Monthly news", description="What is new, once a month.", position=0
    )
    Topic.objects.create(
        slug="deals",
        name="Deals and offers",
        description="Sales and discount codes, when we have them.",
        default_subscribed=False,
        position=1,
    )
    dewi = ContactFactory(first_name="Dewi", email=EMAIL, phone="+6281234560001")
    ConsentFactory(contact=dewi, channel="sms", status="subscribed")

    services.message_create(
        contact=dewi,
        channel="email",
        subject="Our November news",
        body="Hi {{ contact.first_name }}, here is what is new this month.",
        category="marketing",
        topic=news,
    )
    wait_for("the email at the simulator", lambda: sim.messages(to=EMAIL))

    # The email as the customer got it (the simulator's inbox page), and its footer link.
    page.goto(f"{sim.url}/")
    card = page.locator("article.card", has_text=EMAIL)
    expect(card).to_contain_text("Manage preferences:")
    text = card.locator("pre.body").inner_text()
    link = re.search(r"Manage preferences: (\S+)", text)[1]
    assert link.startswith(f"{base}/preferences/")

    # On a phone, without JavaScript: a plain form.
    browser = page.context.browser
    phone = browser.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False)
    try:
        customer = phone.new_page()
        customer.goto(link)
        expect(customer.get_by_role("heading", name="Your message preferences")).to_be_visible()
        sms = customer.get_by_role("checkbox", name="Text messages (SMS)")
        email = customer.get_by_role("checkbox", name="Email")
        monthly = customer.get_by_role("checkbox", name=re.compile("^Monthly news"))
        deals = customer.get_by_role("checkbox", name=re.compile("^Deals and offers"))
        expect(sms).to_be_checked()
        expect(email).to_be_checked()
        expect(monthly).to_be_checked()  # an opt-out topic
        expect(deals).not_to_be_checked()  # an opt-in topic
        # The page fits the screen: nothing scrolls sideways.
        assert customer.evaluate("document.documentElement.scrollWidth") <= 390

        monthly.uncheck()
        sms.uncheck()
        customer.get_by_role("button", name="Save preferences").click()
        expect(customer.get_by_role("status")).to_have_text("Your preferences are saved.")
        expect(monthly).not_to_be_checked()
        expect(sms).not_to_be_checked()
        expect(email).to_be_checked()
        screenshot(customer, "24-preference-center.png")

        # The page stays open; meanwhile the customer unsubscribes from email with the one-click
        # link of another email. Ticking "Deals" on the stale page and saving must not
        # resubscribe email: the page says email changed and shows it as it is now.
        services.consent_set(
            contact=dewi, channel="email", status="unsubscribed", source="one_click"
        )
        deals.check()
        customer.get_by_role("button", name="Save preferences").click()
        expect(customer.get_by_role("alert")).to_contain_text(
            "This changed since you opened the page: Email."
        )
        expect(email).not_to_be_checked()
        expect(deals).to_be_checked()
        expect(monthly).not_to_be_checked()
    finally:
        phone.close()

    ledger = ConsentChange.objects.filter(contact=dewi, source="preference_center")
    deals_topic = Topic.objects.get(slug="deals")
    assert sorted((c.channel, c.topic_id or 0, c.status) for c in ledger) == sorted(
        [
            ("", news.pk, "unsubscribed"),
            ("", deals_topic.pk, "subscribed"),
            ("sms", 0, "unsubscribed"),
        ]
    )
    assert consent_status(contact=dewi, channel="sms") == "unsubscribed"
    assert consent_status(contact=dewi, channel="email") == "unsubscribed"  # not undone
    assert TopicSubscription.objects.get(contact=dewi, topic=news).status == "unsubscribed"
    assert TopicSubscription.objects.get(contact=dewi, topic=deals_topic).status == "subscribed"
