"""Keyed event conditions: "added cart X and did not order cart X within a day"."""

from __future__ import annotations

import pytest

from tests.factories import ContactFactory

from .conftest import event
from .test_conditions import matching

pytestmark = pytest.mark.django_db

DAY = 1
ABANDONED = {
    "event": "cart.updated",
    "within_days": 7,
    "not_followed_by": {
        "event": "order.completed",
        "match": {"cart_id": "trigger.cart_id"},
        "within_hours": 24,
    },
}


def test_an_order_of_another_cart_does_not_settle_this_one():
    ana, ben, cy, dee, eve, fay = (
        ContactFactory(external_id=n) for n in ("ana", "ben", "cy", "dee", "eve", "fay")
    )
    # ana: two carts, orders c1 within the day, never c2 -> c2 abandoned
    event(ana, "cart.updated", days_ago=3, cart_id="c1")
    event(ana, "cart.updated", days_ago=3, cart_id="c2")
    event(ana, "order.completed", days_ago=2.9, cart_id="c1")
    # ben: orders his only cart -> not abandoned
    event(ben, "cart.updated", days_ago=3, cart_id="b1")
    event(ben, "order.completed", days_ago=2.5, cart_id="b1")
    # cy: orders it, but two days later -> abandoned (not within 24 hours)
    event(cy, "cart.updated", days_ago=4, cart_id="y1")
    event(cy, "order.completed", days_ago=2, cart_id="y1")
    # dee: cart 6 hours old -> the day is not over: not (yet) abandoned
    event(dee, "cart.updated", days_ago=0.25, cart_id="d1")
    # eve: the cart_id is a number in the order: JSON equality, type included
    event(eve, "cart.updated", days_ago=3, cart_id="5")
    event(eve, "order.completed", days_ago=2.9, cart_id=5)
    # fay: a cart without a cart_id cannot be judged
    event(fay, "cart.updated", days_ago=3)
    assert matching(ABANDONED) == {"ana", "cy", "eve"}
    assert matching({**ABANDONED, "count": {"gte": 2}}) == set()
    ordered = {**ABANDONED, "followed_by": ABANDONED["not_followed_by"]}
    del ordered["not_followed_by"]
    assert matching(ordered) == {"ana", "ben"}
    # without a time limit: ordered at any time afterwards
    ever = {"event": "order.completed", "match": {"cart_id": "trigger.cart_id"}}
    assert matching({**ordered, "followed_by": ever}) == {"ana", "ben", "cy"}
    unkeyed = {**ABANDONED, "not_followed_by": {"event": "order.completed", "within_hours": 24}}
    # unkeyed, any order settles every cart: ana's c2 too; fay's cart now counts
    assert matching(unkeyed) == {"cy", "fay"}


def test_fixed_values_and_where_on_the_follow_up():
    ana, ben = ContactFactory(external_id="ana"), ContactFactory(external_id="ben")
    event(ana, "cart.updated", days_ago=3, cart_id="a")
    event(ana, "order.completed", days_ago=2.9, cart_id="a", status="failed", total=10, **{"in": 1})
    event(ben, "cart.updated", days_ago=3, cart_id="b")
    event(ben, "order.completed", days_ago=2.9, cart_id="b", status="paid", total=200, **{"in": 2})
    paid = {"cart_id": "trigger.cart_id", "status": "paid"}
    follow = {"event": "order.completed", "match": paid, "within_days": DAY}
    assert matching({"event": "cart.updated", "not_followed_by": follow}) == {"ana"}
    # a property named like a lookup is a property
    odd = {**follow, "match": {"cart_id": "trigger.cart_id", "in": 2}}
    assert matching({"event": "cart.updated", "followed_by": odd}) == {"ben"}
    big = {**follow, "match": {"cart_id": "trigger.cart_id"}}
    big["where"] = [{"property": "total", "op": "gte", "value": 100}]
    assert matching({"event": "cart.updated", "followed_by": big}) == {"ben"}
