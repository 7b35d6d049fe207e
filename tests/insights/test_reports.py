"""Report figures: each metric counted once, the range's edges, drop-off, revenue per
currency, links, and a query count that does not grow with the rows."""

from __future__ import annotations

import datetime as dt

import pytest

from insights.reports import DateRange, funnel_report, journey_report, link_report

from . import report_world as w

pytestmark = pytest.mark.django_db

PERIOD = DateRange(w.FIRST, w.LAST)


def _by(report: dict, key: str) -> dict[str, dict]:
    return {row[key]: row for row in report["rows"]}


def _channel_world() -> None:
    # sms: delivered, replied, converted twice (EUR 10 + EUR 2.50)
    sms = w.message(channel="sms")
    w.reply(sms)
    w.convert(sms, "10.00", "EUR")
    w.convert(sms, "2.50", "EUR")
    # sms: texted STOP back (the ledger row names the reply, not the message)
    stopped = w.message(channel="sms")
    w.unsubscribe(w.reply(stopped), source="keyword")
    # sms: failed
    w.message(channel="sms", status="failed")
    # email: opened; clicked both in SendGrid and through our link: one click
    both = w.message(channel="email")
    w.touch(both, "opened")
    w.provider_click(both)
    w.link_click(w.link(both))
    w.convert(both, "5.00", "USD")
    # email: only a scanner clicked; then a spam report and its unsubscribe
    scanned = w.message(channel="email")
    w.link_click(w.link(scanned), bot=True)
    w.touch(scanned, "complained")
    w.touch(scanned, "unsubscribed")
    w.unsubscribe(scanned, source="provider")
    # email: bounced after being sent
    bounced = w.message(channel="email", status="undelivered")
    w.touch(bounced, "bounced")
    # whatsapp: read (a read receipt is an open), no conversion revenue recorded
    read = w.message(channel="whatsapp", status="read")
    w.convert(read)
    # inbound messages are never in a funnel
    w.reply(read)


def test_channel_funnel_counts_each_metric_once():
    _channel_world()
    report = funnel_report(group="channel", period=PERIOD)
    rows = _by(report, "channel")
    sms, email, whatsapp = rows["sms"], rows["email"], rows["whatsapp"]
    assert (sms["messages"], sms["sent"], sms["delivered"], sms["failed"]) == (3, 2, 2, 1)
    assert (sms["replied"], sms["engaged"], sms["unsubscribed"]) == (2, 2, 1)
    assert (sms["converted"], sms["conversions"]) == (1, 2)
    assert sms["revenue"] == {"EUR": "12.50"}
    assert sms["conversion_rate"] == 0.5 and sms["unsubscribe_rate"] == 0.5
    assert (email["messages"], email["sent"], email["delivered"]) == (3, 3, 2)
    assert (email["bounced"], email["complained"], email["unsubscribed"]) == (1, 1, 1)
    assert email["opened"] == 1 and email["opened_provider_open"] == 1
    # SendGrid and our link both saw the click: one clicked message, shown per source
    assert email["clicked"] == 1
    assert (email["clicked_tracked_link"], email["clicked_provider"], email["clicked_both"]) == (
        1,
        1,
        1,
    )
    assert email["clicked_bot"] == 1  # the scanner: shown, not counted as clicked
    assert email["engaged"] == 1
    assert email["revenue"] == {"USD": "5.00"}
    assert whatsapp["opened"] == 1 and whatsapp["opened_read_receipt"] == 1
    assert whatsapp["opened_provider_open"] == 0
    assert (whatsapp["converted"], whatsapp["revenue"]) == (1, {})
    totals = report["totals"]
    assert totals["messages"] == 7 and totals["clicked"] == 1 and totals["conversions"] == 4
    assert totals["revenue"] == {"EUR": "12.50", "USD": "5.00"}
    assert set(report["sources"]) == {"opened", "clicked"}


def test_a_provider_click_alone_counts_as_clicked():
    msg = w.message(channel="email")
    w.provider_click(msg)
    w.provider_click(msg)  # SendGrid reports every click: still one message
    row = _by(funnel_report(group="channel", period=PERIOD), "channel")["email"]
    assert (row["clicked"], row["clicked_provider"], row["clicked_tracked_link"]) == (1, 1, 0)


def test_range_includes_both_whole_days_and_nothing_outside():
    first = dt.datetime.combine(w.FIRST, dt.time.min, tzinfo=dt.UTC)
    after_last = dt.datetime.combine(w.LAST + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    w.message(at=first)  # the first instant: in
    w.message(at=after_last - dt.timedelta(microseconds=1))  # the last instant: in
    w.message(at=first - dt.timedelta(microseconds=1))  # the day before: out
    w.message(at=after_last)  # the day after: out
    assert funnel_report(group="channel", period=PERIOD)["totals"]["messages"] == 2
    one_day = DateRange(w.FIRST, w.FIRST)
    assert funnel_report(group="channel", period=one_day)["totals"]["messages"] == 1


def test_journey_steps_with_dropoff_and_revenue():
    j = w.journey()
    for n in range(4):
        e = w.enrollment(j)
        w.visit(e, "hello")
        hello = w.journey_message(e, "hello")
        if n < 3:
            w.visit(e, "wait")
        if n < 1:
            w.visit(e, "offer")
            offer = w.journey_message(e, "offer", channel="email")
            w.link_click(w.link(offer))
            w.convert(offer, "30.00", "GBP")
        if n == 3:
            w.reply(hello)
    old = w.enrollment(j)
    w.visit(old, "hello", at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))  # before the range
    report = journey_report(journey="welcome", period=PERIOD)
    steps = {s["step"]: s for s in report["steps"]}
    assert [s["step"] for s in report["steps"]] == ["hello", "wait", "offer"]
    assert (steps["hello"]["entered"], steps["hello"]["lost"]) == (4, None)
    assert (steps["wait"]["entered"], steps["wait"]["lost"], steps["wait"]["lost_share"]) == (
        3,
        1,
        0.25,
    )
    assert (steps["offer"]["entered"], steps["offer"]["lost"]) == (1, 2)
    assert steps["offer"]["lost_share"] == pytest.approx(0.6667)
    assert (steps["hello"]["messages"], steps["hello"]["replied"]) == (4, 1)
    assert (steps["offer"]["clicked"], steps["offer"]["converted"]) == (1, 1)
    assert steps["offer"]["revenue"] == {"GBP": "30.00"}
    assert "messages" not in steps["wait"]  # a wait step sends nothing
    assert report["totals"]["revenue"] == {"GBP": "30.00"}


def test_broadcast_and_template_groups():
    b = w.broadcast()
    promo = w.template("promo", "email")
    sent = w.broadcast_message(b, channel="email", template=promo)
    w.convert(sent, "7.00", "EUR")
    w.broadcast_message(b, channel="email", template=promo, status="failed")
    w.message(template=promo)  # the template outside the broadcast
    w.message()  # neither
    broadcasts = funnel_report(group="broadcast", period=PERIOD)
    row = _by(broadcasts, "broadcast")["spring-sale"]
    assert (row["name"], row["messages"], row["sent"], row["converted"]) == ("Spring sale", 2, 1, 1)
    assert row["revenue"] == {"EUR": "7.00"} and len(broadcasts["rows"]) == 1
    templates = _by(funnel_report(group="template", period=PERIOD), "template")
    assert templates["promo"]["messages"] == 3 and templates["promo"]["revenue"] == {"EUR": "7.00"}
    scoped = funnel_report(group="template", period=PERIOD, broadcast="spring-sale")
    assert scoped["rows"][0]["messages"] == 2 and scoped["scope"] == {"broadcast": "spring-sale"}


def test_link_report_per_url_and_channel_with_bots_apart():
    b = w.broadcast()
    for _ in range(3):
        msg = w.broadcast_message(b, channel="email")
        w.link(msg, "https://shop.example/sale")
        w.link_click(w.link(msg, "https://x.example/", 1), bot=True)
    messages = [r.message for r in b.recipients.select_related("message")]
    first_sale = messages[0].tracked_links.get(position=0)
    w.link_click(first_sale)
    w.link_click(first_sale)  # the same person again
    w.link_click(messages[1].tracked_links.get(position=0))
    sms = w.broadcast_message(b, channel="sms")
    w.link_click(w.link(sms, "https://shop.example/sale"))
    w.provider_click(messages[2])  # SendGrid's click: not a tracked link's
    w.link_click(w.link(w.message(channel="email"), "https://shop.example/sale"))  # elsewhere
    report = link_report(period=PERIOD, broadcast="spring-sale")
    rows = {(r["url"], r["channel"]): r for r in report["rows"]}
    email_sale = rows[("https://shop.example/sale", "email")]
    assert (email_sale["messages"], email_sale["clicks"], email_sale["unique_clickers"]) == (
        3,
        3,
        2,
    )
    assert (email_sale["messages_clicked"], email_sale["bot_clicks"]) == (2, 0)
    assert email_sale["click_rate"] == pytest.approx(0.6667)
    about = rows[("https://x.example/", "email")]
    assert (about["clicks"], about["bot_clicks"], about["unique_clickers"]) == (0, 3, 0)
    assert rows[("https://shop.example/sale", "sms")]["clicks"] == 1
    assert len(rows) == 3
    assert report["rows"][0]["url"] == "https://shop.example/sale"  # most clicked first


def _bulk(n: int) -> None:
    j, b, promo = w.journey(f"j{n}"), w.broadcast(f"b{n}"), w.template(f"t{n}")
    for i in range(n):
        e = w.enrollment(j)
        w.visit(e, "hello")
        msg = w.journey_message(e, "hello", channel="email", template=promo)
        w.link_click(w.link(msg))
        w.provider_click(msg)
        w.convert(msg, "1.00", "EUR" if i % 2 else "USD")
        other = w.broadcast_message(b, channel="sms")
        w.unsubscribe(other)


@pytest.mark.parametrize("n", [2, 12])
def test_query_counts_do_not_grow_with_rows(n, django_assert_max_num_queries):
    _bulk(n)
    for group in ("channel", "template", "broadcast", "step"):
        with django_assert_max_num_queries(2):
            report = funnel_report(group=group, period=PERIOD)
        assert report["totals"]["messages"] == (2 * n if group == "channel" else n)
    with django_assert_max_num_queries(4):
        report = journey_report(journey=f"j{n}", period=PERIOD)
    assert report["steps"][0]["entered"] == n and report["totals"]["conversions"] == n
    with django_assert_max_num_queries(2):
        links = link_report(period=PERIOD, journey=f"j{n}")
    assert links["rows"][0]["clicks"] == n
