"""Measuring a journey, through a real browser — issue 14's "Done when": the built-in
"Welcome offer (A/B test)" journey splits new subscribers between two offers and holds 10 %
out as a control group. Subscriptions arrive through the events API, a real Celery worker
sends through the provider simulator (signed callbacks deliver), customers click the tracked
links (one in the simulator's page, in the browser), orders arrive as events and are
attributed to the clicked message, and a marketer (the Marketing group) reads the conversion,
revenue, uplift and significance on the journey's Experiment page, the funnel on Reports and
the counts on the journey map.

The contacts are picked with the journey's own deterministic assignment (the same hash the
engine uses), so the group sizes are known in advance and the test's numbers are exact.

Screens go to .data/test/screenshots/ (`TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots`
refreshes the README's pictures); skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
import requests
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, expect

from insights.journey_experiments import journey_experiment
from insights.models import Conversion
from insights.significance import compare
from journeys.blueprints import install_blueprints
from journeys.experiments import in_holdout, split_variant
from journeys.models import Enrollment, Event, Journey
from journeys.staff_groups import ensure_staff_groups
from messaging.click_buffer import clicks_flush
from messaging.models import Contact, Message, Touchpoint
from tests.e2e.test_browser import (  # noqa: F401  (fixtures)
    js_errors,
    live_stack,
    page,
    screenshot,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

USERNAME, PASSWORD = "mara", "a-long-test-password-1"
CONTROL, TREATED = 10, 60
PRICE = {"a": Decimal("40.00"), "b": Decimal("55.00")}
BROWSER_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
TRACKED = re.compile(r"https?://\S+/l/[A-Za-z0-9]+")


def clicks_recorded() -> int:
    """Messages with a human click on the timeline (with Redis, clicks are buffered and
    written by beat's flush every CLICK_FLUSH_SECONDS: run it as beat would)."""
    clicks_flush()
    return Touchpoint.objects.filter(kind="clicked").values("message_id").distinct().count()


def marketer() -> User:
    ensure_staff_groups()
    user = User.objects.create_user(USERNAME, "mara@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing"))
    return user


def audience(journey: Journey) -> tuple[list[Contact], list[Contact]]:
    """CONTROL held-out and TREATED contacts, by the journey's own assignment."""
    control: list[Contact] = []
    treated: list[Contact] = []
    n = 0
    while len(control) < CONTROL or len(treated) < TREATED:
        n += 1
        contact = Contact.objects.create(
            external_id=f"sub-{n}", email=f"subscriber{n}@example.com", first_name=f"Sub{n}"
        )
        held = in_holdout(
            journey_slug=journey.slug, contact_id=contact.pk, percent=journey.holdout_percent
        )
        group = control if held else treated
        limit = CONTROL if held else TREATED
        if len(group) < limit:
            group.append(contact)
        else:
            contact.delete()
    return control, treated


def post_event(base: str, key: str, name: str, contact: Contact, properties: dict) -> None:
    response = requests.post(
        f"{base}/api/v1/events/",
        json={
            "name": name,
            "contact": {"external_id": contact.external_id},
            "properties": properties,
        },
        headers={"Authorization": f"Api-Key {key}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=10,
    )
    assert response.status_code == 202, response.text


def test_a_split_with_a_holdout_from_signup_to_significance(
    live_stack,  # noqa: F811
    page: Page,  # noqa: F811
    js_errors,  # noqa: F811
    settings,
):
    base, sim, key = live_stack
    expect.set_options(timeout=20_000)
    settings.LINK_BOT_SECONDS = 0  # the test's customers click within a second of delivery
    install_blueprints(activate=True)
    journey = Journey.objects.get(slug="welcome-offer")
    split = journey.steps.get(key="offer-split")
    control, treated = audience(journey)
    variant = {
        c.pk: split_variant(
            journey_slug=journey.slug,
            step_key=split.key,
            contact_id=c.pk,
            variants=split.config["variants"],
        )["key"]
        for c in treated
    }
    mara = marketer()

    # 1. The shop's backend reports the new subscribers; the worker enrolls and sends.
    for contact in control + treated:
        post_event(base, key, "newsletter.subscribed", contact, {"source": "footer-form"})
    wait_for(
        "every treated subscriber's offer to be delivered",
        lambda: Message.objects.filter(status="delivered", contact__in=treated).count() == TREATED,
        timeout=300,
    )
    held = Enrollment.objects.filter(journey=journey, holdout=True)
    assert set(held.values_list("contact_id", flat=True)) == {c.pk for c in control}
    assert not Message.objects.filter(contact__in=control).exists()  # the control gets nothing
    for contact in treated:
        [received] = sim.messages(to=contact.email)
        expected = "WELCOME10" if variant[contact.pk] == "a" else "ships free"
        assert expected in received["body"]

    # 2. Customers click. Mara plays one of them in the simulator's page, in the browser...
    page.context.route(  # the shop is not on this machine: the browser gets a stand-in
        "https://shop.example.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<h1>Shop</h1>"),
    )
    redirects = []
    page.context.on("response", lambda r: redirects.append(r) if "/l/" in r.url else None)
    clickers = [c for c in treated if variant[c.pk] == "b"]
    clickers += [c for c in treated if variant[c.pk] == "a"][::4]
    first = clickers[0]
    page.goto(sim.url)
    card = page.locator("article.card", has_text=first.email)
    with page.context.expect_page() as shop_tab:
        card.locator("a.link", has_text="/l/").first.click()
    shop_tab.value.wait_for_load_state()
    wait_for("the tracked link's answer", lambda: redirects)
    [answer] = redirects
    assert answer.status == 302
    location = answer.headers["location"]
    assert location.startswith("https://shop.example.com/welcome?")
    assert "utm_source=touchline" in location and "utm_medium=email" in location
    assert "utm_campaign=welcome-offer" in location
    shop_tab.value.close()
    # ...the others on their phones.
    for contact in clickers[1:]:
        [received] = sim.messages(to=contact.email)
        link = TRACKED.search(received["body"]).group(0)
        answer = requests.get(
            link, headers={"User-Agent": BROWSER_UA}, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 302 and answer.headers["Location"].startswith(
            "https://shop.example.com/welcome"
        )
    wait_for("every click on the timeline", lambda: clicks_recorded() == len(clickers))
    assert not Touchpoint.objects.filter(kind="clicked_bot").exists()

    # 3. Orders arrive as events: every clicker buys, and one of the control group too.
    for contact in clickers:
        total = PRICE[variant[contact.pk]]
        post_event(base, key, "order.completed", contact, {"total": str(total), "currency": "USD"})
    post_event(base, key, "order.completed", control[0], {"total": "30.00", "currency": "USD"})
    wait_for(
        "every order to be applied",
        lambda: not Event.objects.filter(name="order.completed", processed_at=None).exists()
        and Event.objects.filter(name="order.completed").count() == len(clickers) + 1,
    )
    # Each order is credited once, to the message its buyer clicked (last click).
    conversions = Conversion.objects.filter(journey__slug=journey.slug)
    assert conversions.count() == len(clickers)
    assert set(conversions.values_list("contact_id", "touch")) == {
        (c.pk, "clicked") for c in clickers
    }
    assert not Conversion.objects.filter(contact=control[0]).exists()  # nothing to credit
    assert sum(conversions.values_list("revenue", flat=True)) == sum(
        PRICE[variant[c.pk]] for c in clickers
    )

    # 4. Mara reads the experiment: treated vs control with its significance, and the variants.
    expected = compare(
        treated=TREATED, treated_converted=len(clickers), control=CONTROL, control_converted=1
    )
    assert expected.significant
    results = journey_experiment(journey=journey)
    assert results["holdout"]["treated_converted"] == len(clickers)
    assert results["holdout"]["p_value"] == pytest.approx(expected.p_value)

    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{base}/admin/journeys/journey/{journey.pk}/change/")
    page.get_by_role("link", name="Experiment", exact=True).click()
    holdout = page.locator("#experiment-holdout tbody tr")
    expect(holdout.nth(0)).to_contain_text(f"{TREATED}")
    expect(holdout.nth(0).locator("td").nth(2)).to_have_text(str(len(clickers)))
    expect(holdout.nth(1).locator("td").nth(1)).to_have_text(str(CONTROL))
    expect(holdout.nth(1).locator("td").nth(2)).to_have_text("1")
    verdict = page.locator("#content-main p", has_text="Uplift")
    expect(verdict).to_contain_text(f"p = {expected.p_value:.3g}")
    expect(verdict.locator("strong")).to_have_text("significant")
    rows = page.locator('table.experiment-split[data-step="offer-split"] tbody tr')
    expect(rows).to_have_count(2)
    for row, key_ in ((rows.nth(0), "a"), (rows.nth(1), "b")):
        buyers = [c for c in clickers if variant[c.pk] == key_]
        entered = sum(1 for v in variant.values() if v == key_)
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text(key_)
        expect(cells.nth(3)).to_have_text(str(entered))
        expect(cells.nth(4)).to_have_text(str(len(buyers)))
        expect(row).to_contain_text(str(PRICE[key_] * len(buyers)))
    screenshot(page, "26-journey-experiment.png")

    # 5. The funnel per step on Reports, and the journey map's counts.
    page.goto(f"{base}/admin/touchline/reports/journeys/?journey={journey.slug}")
    shipping_row = page.locator("#reports-table tbody tr", has_text="offer-shipping")
    expect(shipping_row).to_have_count(1)
    screenshot(page, "27-journey-report.png")
    page.goto(f"{base}/admin/touchline/journeys/{journey.pk}/map/")
    svg = page.locator("#journey-map[data-loaded=true] svg.journey-map-svg")
    shipping = svg.locator('g.journey-map-node[data-node="step:offer-shipping"]')
    b_count = sum(1 for v in variant.values() if v == "b")
    expect(shipping.locator('[data-count="sent"]')).to_have_text(f"sent: {b_count}")
    expect(shipping.locator('[data-count="converted"]')).to_have_text(f"converted: {b_count}")
    expect(svg.locator('g.journey-map-node[data-node="step:offer-split"]')).to_have_attribute(
        "data-kind", "split"
    )
    screenshot(page, "28-journey-map-experiment.png")
    assert js_errors == []
    assert mara.is_staff and not mara.is_superuser
