"""The journey map in a real browser: the page lays the graph out with the vendored dagre
and draws it as SVG, a box per step with its counts and an arrow per way out with the share
of visits that took it; the date range redraws it, and a bad range shows the field error.

`TOUCHLINE_SCREENSHOTS_DIR=docs/screenshots` refreshes docs/screenshots/25-journey-map.png.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.audiences.test_membership import staff
from tests.e2e.test_browser import js_errors, page, screenshot  # noqa: F401  (fixtures)
from tests.insights.test_journey_map import today, world  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-1"


def test_the_map_draws_steps_counts_and_shares(live_server, page: Page, js_errors, world):  # noqa: F811
    expect.set_options(timeout=15_000)
    journey, _, _ = world
    user = staff("viewer")
    user.set_password(PASSWORD)
    user.save()
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # From the journey's dashboard to its map.
    page.goto(f"{live_server.url}/admin/touchline/journeys/{journey.pk}/dashboard/")
    page.get_by_role("link", name="Journey map").click()
    root = page.locator("#journey-map[data-loaded=true]")
    expect(root).to_have_count(1)
    svg = root.locator("svg.journey-map-svg")
    nodes = svg.locator("g.journey-map-node")
    expect(nodes).to_have_count(12)  # entry, nine steps, end, goal

    def node(node_id: str):
        return svg.locator(f'g.journey-map-node[data-node="{node_id}"]')

    def edge(source: str, target: str):
        return svg.locator(f'g.journey-map-edge[data-edge="{source}->{target}"]')

    expect(node("entry")).to_contain_text("entered: 6")
    remind = node("step:remind")
    expect(remind).to_contain_text("remind")
    expect(remind.locator('[data-count="entered"]')).to_have_text("entered: 6")
    expect(remind.locator('[data-count="sent"]')).to_have_text("sent: 5")
    expect(remind.locator('[data-count="delivered"]')).to_have_text("delivered: 4")
    expect(remind.locator('[data-count="engaged"]')).to_have_text("engaged: 2")
    expect(remind.locator('[data-count="converted"]')).to_have_text("converted: 1")
    expect(remind.locator('[data-count="dropped"]')).to_have_text("dropped: 1")
    expect(node("step:bought").locator('[data-count="waiting"]')).to_have_text("waiting now: 1")
    expect(node("step:test")).to_have_attribute("data-kind", "split")
    expect(node("step:route")).to_have_attribute("data-kind", "branch")
    expect(node("goal").locator('[data-count="conversions"]')).to_have_text("conversions: 1")

    expect(edge("step:remind", "step:wait-1d")).to_contain_text("83.3% next (5)")
    expect(edge("step:bought", "step:route")).to_contain_text("40% timeout (2 days) (2)")
    expect(edge("step:route", "step:bye")).to_contain_text("50% otherwise (1)")
    expect(edge("step:test", "step:offer-a")).to_contain_text("100% variant a (50%) (1)")
    expect(edge("step:test", "step:offer-b")).to_contain_text("0% variant b (50%) (0)")
    expect(edge("step:thanks", "goal")).to_contain_text("50% converted (1)")
    expect(page.locator("[data-legend]")).to_contain_text("Split (A/B)")
    screenshot(page, "25-journey-map.png")

    # One day only: the three enrollments that began 5 days ago.
    day = today(5).isoformat()
    page.locator("#journey-map-start").fill(day)
    page.locator("#journey-map-end").fill(day)
    page.get_by_role("button", name="Show").click()
    expect(node("entry")).to_contain_text("entered: 3")
    expect(root.locator("[data-status]")).to_have_text(f"{day} to {day}")

    # A range that ends before it starts: the field error, the last map kept.
    page.locator("#journey-map-start").fill(today(1).isoformat())
    page.locator("#journey-map-end").fill(today(2).isoformat())
    page.get_by_role("button", name="Show").click()
    expect(root.locator("[data-errors]")).to_contain_text("end: The end date must not be before")
    expect(node("entry")).to_contain_text("entered: 3")
    assert js_errors == []
