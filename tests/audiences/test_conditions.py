"""Each condition type and operator, nesting and `not`, evaluated by the database."""

from __future__ import annotations

import pytest

from audiences.definition import definition_compile
from messaging.models import Contact
from tests.factories import ConsentFactory, ContactFactory

from .conftest import NOW, event, segment

pytestmark = pytest.mark.django_db


def matching(definition: dict) -> set[str]:
    q = definition_compile(definition, now=NOW)
    return set(
        Contact.objects.filter(erased_at__isnull=True)
        .filter(q)
        .values_list("external_id", flat=True)
    )


@pytest.fixture
def people():
    return {
        "ana": ContactFactory(
            external_id="ana",
            timezone="Asia/Jakarta",
            attributes={"plan": "pro", "score": 80, "signup": "2026-01-15", "tags": "vip early"},
        ),
        "ben": ContactFactory(
            external_id="ben",
            timezone="Europe/Paris",
            email="",
            attributes={"plan": "team", "score": "120", "signup": "2025-06-01T10:00:00Z"},
        ),
        "cy": ContactFactory(
            external_id="cy",
            timezone="Asia/Jakarta",
            attributes={"plan": "free", "score": "lots", "signup": "soon"},
        ),
        "dee": ContactFactory(external_id="dee", timezone="UTC", attributes={}),
    }


def test_field_ops(people):
    assert matching({"field": "timezone", "op": "eq", "value": "Asia/Jakarta"}) == {"ana", "cy"}
    assert matching({"field": "timezone", "op": "neq", "value": "Asia/Jakarta"}) == {"ben", "dee"}
    assert matching({"field": "timezone", "op": "contains", "value": "asia"}) == {"ana", "cy"}
    assert matching({"field": "timezone", "op": "in", "value": ["UTC", "Europe/Paris"]}) == {
        "ben",
        "dee",
    }
    assert matching({"field": "email", "op": "not_exists"}) == {"ben"}
    assert matching({"field": "email", "op": "exists"}) == {"ana", "cy", "dee"}
    assert matching({"field": "created_at", "op": "lt", "value": "2000-01-01"}) == set()
    assert matching({"field": "created_at", "op": "gte", "value": "2000-01-01"}) == set(people)
    assert matching({"field": "is_test", "op": "eq", "value": False}) == set(people)


def test_attribute_equality_membership_and_presence(people):
    assert matching({"attribute": "plan", "op": "eq", "value": "pro"}) == {"ana"}
    # neq includes contacts without the attribute
    assert matching({"attribute": "plan", "op": "neq", "value": "pro"}) == {"ben", "cy", "dee"}
    assert matching({"attribute": "plan", "op": "in", "value": ["pro", "team"]}) == {"ana", "ben"}
    assert matching({"attribute": "tags", "op": "contains", "value": "VIP"}) == {"ana"}
    assert matching({"attribute": "plan", "op": "exists"}) == {"ana", "ben", "cy"}
    assert matching({"attribute": "plan", "op": "not_exists"}) == {"dee"}
    assert matching({"attribute": "score", "op": "eq", "value": 80}) == {"ana"}


def test_attribute_numeric_comparisons_skip_non_numbers(people):
    # "120" (a numeric string) counts; "lots" and a missing key never match and never raise
    assert matching({"attribute": "score", "op": "gt", "value": 100}) == {"ben"}
    assert matching({"attribute": "score", "op": "gte", "value": 80}) == {"ana", "ben"}
    assert matching({"attribute": "score", "op": "lt", "value": 100}) == {"ana"}
    assert matching({"attribute": "score", "op": "lte", "value": 120.0}) == {"ana", "ben"}
    assert matching({"not": {"attribute": "score", "op": "gt", "value": 100}}) == {
        "ana",
        "cy",
        "dee",
    }


def test_attribute_date_comparisons(people):
    assert matching({"attribute": "signup", "op": "gte", "value": "2026-01-01"}) == {"ana"}
    assert matching({"attribute": "signup", "op": "lt", "value": "2026-01-01"}) == {"ben"}
    assert matching({"attribute": "signup", "op": "lte", "value": "2026-01-15"}) == {"ana", "ben"}
    assert matching({"attribute": "signup", "op": "gt", "value": "2030-01-01"}) == set()


def test_reachable_follows_the_send_policy():
    ok = ContactFactory(external_id="ok", phone="+14155550001")
    ConsentFactory(contact=ok, channel="sms", status="subscribed")
    unknown = ContactFactory(external_id="unknown", phone="+14155550002")
    invalid = ContactFactory(external_id="invalid", phone="+14155550003", phone_invalid=True)
    ConsentFactory(contact=invalid, channel="sms", status="subscribed")
    stopped = ContactFactory(external_id="stopped", phone="+14155550004")
    ConsentFactory(contact=stopped, channel="sms", status="unsubscribed")
    no_phone = ContactFactory(external_id="nophone", phone="", email="")
    ConsentFactory(contact=no_phone, channel="sms", status="subscribed")
    bounced = ContactFactory(external_id="bounced", email_undeliverable=True)
    wa = ContactFactory(external_id="wa", phone="+14155550005", whatsapp="")
    ConsentFactory(contact=wa, channel="whatsapp", status="subscribed")
    assert matching({"reachable": "sms"}) == {"ok"}
    # transactional: anything not unsubscribed (bounced has a phone; its email bounced)
    assert matching({"reachable": "sms", "category": "transactional"}) == {
        "ok",
        "unknown",
        "wa",
        "bounced",
    }
    # email: marketing may go to subscribed or unknown, never to a bounced or absent address
    assert matching({"reachable": "email"}) == {
        "ok",
        "unknown",
        "invalid",
        "stopped",
        "wa",
    }
    assert matching({"reachable": "whatsapp"}) == {"wa"}
    del unknown, bounced


def test_events_count_window_and_properties():
    ana, ben, cy, dee = (ContactFactory(external_id=n) for n in ("ana", "ben", "cy", "dee"))
    event(ana, "order.completed", days_ago=10, total=150)
    event(ana, "order.completed", days_ago=20, total=90)
    event(ben, "order.completed", days_ago=5, total=300)
    event(ben, "order.completed", days_ago=100, total=300)  # outside 90 days
    event(cy, "order.completed", days_ago=1, total="lots")
    event(dee, "cart.updated", days_ago=1)
    bought = {"event": "order.completed", "within_days": 90}
    assert matching(bought) == {"ana", "ben", "cy"}
    assert matching({**bought, "count": {"gte": 2}}) == {"ana"}
    assert matching({**bought, "count": {"gt": 1}}) == {"ana"}
    assert matching({**bought, "count": {"eq": 1}}) == {"ben", "cy"}
    assert matching({**bought, "count": {"lte": 1}}) == {"ben", "cy", "dee"}
    assert matching({**bought, "count": {"lt": 2}}) == {"ben", "cy", "dee"}
    assert matching({**bought, "count": {"eq": 0}}) == {"dee"}
    assert matching({"event": "order.completed", "count": {"gte": 2}}) == {"ana", "ben"}
    big = [{"property": "total", "op": "gte", "value": 100}]
    assert matching({**bought, "where": big}) == {"ana", "ben"}
    assert matching({**bought, "where": big, "count": {"gte": 2}}) == set()
    assert matching({"event": "order.completed", "where": big, "count": {"gte": 2}}) == {"ben"}
    # between dates: since inclusive, until exclusive
    window = {"since": "2026-11-01", "until": "2026-11-20T00:00:00Z"}
    assert matching({"event": "order.completed", **window}) == {"ana", "ben"}


def test_groups_nesting_and_not(people):
    event(people["ana"], "order.completed", days_ago=3)
    definition = {
        "all": [
            {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"},
            {
                "any": [
                    {"event": "order.completed", "within_days": 90},
                    {"attribute": "plan", "op": "eq", "value": "free"},
                ]
            },
            {"not": {"attribute": "score", "op": "gte", "value": 100}},
        ]
    }
    assert matching(definition) == {"ana", "cy"}
    assert matching({"not": definition}) == {"ben", "dee"}
    assert matching({"all": []}) == set(people)
    assert matching({"not": {"not": {"attribute": "plan", "op": "eq", "value": "pro"}}}) == {"ana"}


def test_segment_membership_condition(people):
    segment("jakarta", {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"})
    fixed = segment("fixed", kind="static")
    from audiences.services import static_segment_add

    static_segment_add(
        segment=fixed, contacts=Contact.objects.filter(external_id__in=["ben", "cy"]), now=NOW
    )
    assert matching({"segment": "jakarta"}) == {"ana", "cy"}
    assert matching({"segment": "fixed"}) == {"ben", "cy"}
    assert matching({"all": [{"segment": "jakarta"}, {"segment": "fixed"}]}) == {"cy"}
    assert matching({"not": {"segment": "fixed"}}) == {"ana", "dee"}


def test_everyone_and_nobody_compose(people):
    everyone = {"all": []}
    assert matching({"any": [everyone, {"attribute": "plan", "op": "eq", "value": "pro"}]}) == set(
        people
    )
    assert matching({"not": everyone}) == set()
    assert matching({"not": {"not": everyone}}) == set(people)
    assert matching({"event": "order.completed", "count": {"lt": 0}}) == set()
    assert matching({"event": "order.completed", "count": {"gte": 0}}) == set(people)


def test_a_deleted_segment_matches_nobody_and_recompute_still_runs(people):
    from audiences.models import Segment
    from audiences.services import segment_recompute

    segment("jakarta", {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"})
    uses = segment(
        "uses", {"any": [{"segment": "jakarta"}, {"field": "timezone", "op": "eq", "value": "UTC"}]}
    )
    only = segment("only", {"segment": "jakarta"})
    Segment.objects.filter(slug="jakarta").delete()  # as the admin's delete would
    assert segment_recompute(segment=uses, now=NOW).member_count == 1
    assert segment_recompute(segment=only, now=NOW).member_count == 0
