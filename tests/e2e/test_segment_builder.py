"""The segment builder in a real browser: the live count and sample follow the definition
as it is typed (debounced, server-side), errors show at their path, and after saving the
page shows the size over time."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.audiences.test_membership import staff
from tests.e2e.test_browser import js_errors, page, screenshot  # noqa: F401  (fixtures)
from tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_live_count_as_the_definition_is_typed(live_server, page: Page, js_errors):  # noqa: F811
    expect.set_options(timeout=15_000)
    user = staff("marketing")
    user.set_password("a-long-test-password-1")
    user.save()
    ContactFactory(first_name="Jaya", last_name="Putri", timezone="Asia/Jakarta")
    ContactFactory(first_name="Budi", last_name="Santoso", timezone="Asia/Jakarta")
    ContactFactory(first_name="Paul", last_name="Martin", timezone="Europe/Paris")

    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("marketing")
    page.get_by_label("Password").fill("a-long-test-password-1")
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{live_server.url}/admin/audiences/segment/add/")
    status = page.locator("#segment-live-status")
    expect(status).to_contain_text("3 contacts match now")  # the default: everyone
    page.locator("#id_name").fill("Jakarta")
    page.locator("#id_slug").fill("jakarta")
    definition = page.locator("#id_definition")
    definition.fill(json.dumps({"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}))
    expect(status).to_contain_text("2 contacts match now")
    expect(page.locator("#segment-live-sample")).to_contain_text("Jaya Putri")
    expect(page.locator("#segment-live-sample li")).to_have_count(2)
    screenshot(page, "segment-builder-live-count.png")

    definition.fill('{"field": "timezone", "op": "like", "value": 1}')
    expect(status).to_contain_text("fix the definition")
    expect(page.locator("#segment-live-errors")).to_contain_text("definition.op: Choose one of")

    definition.fill(json.dumps({"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}))
    expect(status).to_contain_text("2 contacts match now")
    page.locator("input[name=_continue]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    # Saving recomputed it: the membership and this hour's size.
    expect(page.locator(".field-size_over_time")).to_contain_text("2 members now")
    expect(page.locator(".field-size_over_time svg polyline")).to_have_count(1)
    screenshot(page, "segment-size-over-time.png")
    assert js_errors == []


def test_the_visual_builder_writes_the_definition(live_server, page: Page, js_errors):  # noqa: F811
    from audiences.services import segment_create
    from journeys.models import Event

    expect.set_options(timeout=15_000)
    user = staff("marketing")
    user.set_password("a-long-test-password-1")
    user.save()
    jaya = ContactFactory(first_name="Jaya", last_name="Putri", timezone="Asia/Jakarta")
    ContactFactory(first_name="Budi", last_name="Santoso", timezone="Asia/Jakarta")
    ContactFactory(first_name="Paul", last_name="Martin", timezone="Europe/Paris")
    Event.objects.create(contact=jaya, name="order.completed", occurred_at=jaya.created_at)
    segment_create(name="Everyone", slug="everyone", kind="dynamic", definition={"all": []})

    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("marketing")
    page.get_by_label("Password").fill("a-long-test-password-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/admin/audiences/segment/add/")
    builder = page.locator("#segment-visual-builder")
    status = page.locator("#segment-live-status")
    expect(builder).to_be_visible()

    builder.get_by_role("button", name="Add a condition").click()
    row = builder.locator(".segment-builder-row").nth(0)
    row.locator('[data-name="field"]').select_option("timezone")
    row.locator('[data-name="value"]').fill("Asia/Jakarta")
    expect(status).to_contain_text("2 contacts match now")

    builder.get_by_role("button", name="Add a condition").click()
    second = builder.locator(".segment-builder-row").nth(1)
    second.locator('[data-name="kind"]').select_option("did")
    second.locator('[data-name="event"]').fill("order.completed")
    second.locator('[data-name="days"]').fill("30")
    expect(status).to_contain_text("1 contact matches now")
    assert json.loads(page.locator("#id_definition").input_value()) == {
        "all": [
            {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"},
            {"event": "order.completed", "within_days": 30},
        ]
    }
    builder.locator("[data-join]").select_option("any")
    expect(status).to_contain_text("2 contacts match now")
    screenshot(page, "segment-visual-builder.png")

    # JSON the builder cannot show: it says so, and the JSON stays the truth.
    page.locator("#id_definition").fill('{"not": {"segment": "everyone"}}')
    expect(builder.locator("[data-notice]")).to_be_visible()
    expect(status).to_contain_text("0 contacts match now")
    # JSON it can show is drawn as rows again.
    page.locator("#id_definition").fill('{"any": [{"reachable": "sms"}, {"segment": "everyone"}]}')
    expect(builder.locator(".segment-builder-row")).to_have_count(2)
    expect(builder.locator('[data-name="segment"]')).to_have_value("everyone")
    assert js_errors == []
