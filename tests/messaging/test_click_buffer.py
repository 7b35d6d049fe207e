"""Clicks through Redis (REDIS_URL set): the redirect reads a cached destination and buffers
the click in one round trip, with no database query; the beat flush writes the touchpoints
once, however often it runs and wherever a worker died."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
import redis
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging import click_buffer, services
from messaging.click_buffer import PENDING, PROCESSING, clicks_flush
from messaging.links import link_token
from messaging.models import Message, Touchpoint, TrackedLink
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 2, 10, 0, 20, tzinfo=dt.UTC)
PERSON = "Mozilla/5.0 (iPhone)"


@pytest.fixture(autouse=True)
def needs_redis(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the embedded default writes clicks directly)")


@pytest.fixture
def rds(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def sent_link(capture, *, body="See https://shop.example/a?k=v", phone="+14155552671", **kw):
    """A sent message's first tracked link; its commit callbacks run (the cache is filled)."""
    with capture(execute=True):
        message, _ = services.message_create(
            contact=ContactFactory(phone=phone), channel="sms", body=body, **kw
        )
    Message.objects.filter(pk=message.pk).update(sent_at=NOW - dt.timedelta(minutes=5))
    return TrackedLink.objects.get(message=message, position=0)


def kinds() -> list[str]:
    return sorted(
        Touchpoint.objects.filter(kind__startswith="clicked").values_list("kind", flat=True)
    )


@time_machine.travel(NOW, tick=False)
def test_a_cached_click_makes_no_query_and_the_flush_writes_it(
    client, django_capture_on_commit_callbacks, django_assert_num_queries, rds
):
    link = sent_link(django_capture_on_commit_callbacks, metadata={"broadcast": "winter-sale"})
    with django_assert_num_queries(0):
        response = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    assert response.status_code == 302
    target = urlparse(response["Location"])
    assert (target.netloc, target.path) == ("shop.example", "/a")
    assert parse_qs(target.query) == {
        "k": ["v"],
        "utm_source": ["touchline"],
        "utm_medium": ["sms"],
        "utm_campaign": ["winter-sale"],
    }
    assert kinds() == [] and rds.llen(PENDING) == 1  # on the timeline at the next flush
    assert clicks_flush() == {"clicks": 1}
    [click] = Touchpoint.objects.filter(kind="clicked")
    assert (click.message_id, click.contact_id) == (link.message_id, link.message.contact_id)
    assert click.data == {"link": link.pk, "url": link.url}
    assert click.occurred_at == NOW
    assert click.dedupe_key == f"clicked:{link.pk}:{int(NOW.timestamp() // 60)}"
    assert rds.llen(PENDING) == 0 and rds.llen(PROCESSING) == 0


@time_machine.travel(NOW, tick=False)
def test_flushing_twice_writes_each_click_once_and_a_minute_is_one_click(
    client, django_capture_on_commit_callbacks
):
    link = sent_link(django_capture_on_commit_callbacks)
    for _ in range(3):
        client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    clicks_flush()
    client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)  # same minute again
    clicks_flush()
    clicks_flush()
    assert kinds() == ["clicked"]


@time_machine.travel(NOW, tick=False)
def test_a_flush_that_dies_between_drain_and_insert_loses_nothing(
    client, django_capture_on_commit_callbacks, monkeypatch, rds
):
    first = sent_link(django_capture_on_commit_callbacks)
    second = sent_link(
        django_capture_on_commit_callbacks, body="https://shop.example/b", phone="+14155552672"
    )
    for link in (first, second):
        client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)

    def die(items):
        raise SystemExit("worker killed")

    monkeypatch.setattr(click_buffer, "_write", die)
    with pytest.raises(SystemExit):
        clicks_flush()
    assert rds.llen(PENDING) == 0 and rds.llen(PROCESSING) == 2  # drained, not written
    assert kinds() == []
    monkeypatch.undo()
    assert clicks_flush() == {"clicks": 2}
    assert kinds() == ["clicked", "clicked"]
    assert rds.llen(PROCESSING) == 0


@time_machine.travel(NOW, tick=False)
def test_a_flush_that_dies_after_the_insert_counts_nothing_twice(
    client, django_capture_on_commit_callbacks, rds
):
    link = sent_link(django_capture_on_commit_callbacks)
    client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    [record] = rds.lrange(PENDING, 0, -1)
    clicks_flush()
    rds.rpush(PROCESSING, record)  # as if the worker died before deleting its batch
    clicks_flush()
    assert kinds() == ["clicked"] and rds.llen(PROCESSING) == 0


@pytest.mark.parametrize(
    ("method", "agent", "delivered_ago", "reason"),
    [
        ("head", PERSON, None, "head"),
        ("get", "Slackbot-LinkExpanding 1.0", None, "user_agent"),
        ("get", PERSON, 0.5, "too_soon"),
    ],
)
def test_bots_are_flagged_at_the_flush(
    client, django_capture_on_commit_callbacks, method, agent, delivered_ago, reason
):
    link = sent_link(django_capture_on_commit_callbacks)
    if delivered_ago is not None:
        Message.objects.filter(pk=link.message_id).update(
            delivered_at=NOW - dt.timedelta(seconds=delivered_ago)
        )
    with time_machine.travel(NOW, tick=False):
        response = getattr(client, method)(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=agent)
    assert response.status_code == 302
    # The flush runs later; the delivery-time check uses the click's own time.
    with time_machine.travel(NOW + dt.timedelta(seconds=30), tick=False):
        clicks_flush()
    [bot] = Touchpoint.objects.filter(kind__startswith="clicked")
    assert (bot.kind, bot.data["bot"], bot.data["reason"]) == ("clicked_bot", True, reason)


@time_machine.travel(NOW, tick=False)
def test_a_cache_miss_reads_the_database_once_then_is_cached(
    client, django_capture_on_commit_callbacks, django_assert_num_queries
):
    link = sent_link(django_capture_on_commit_callbacks)
    click_buffer.clicks_buffer_forget()  # evicted (or Redis restarted empty)
    with django_assert_num_queries(1):
        miss = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    with django_assert_num_queries(0):
        hit = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    assert miss.status_code == hit.status_code == 302
    assert miss["Location"] == hit["Location"]
    assert "utm_medium=sms" in hit["Location"]
    clicks_flush()
    assert kinds() == ["clicked"]


def test_forged_and_unknown_tokens_are_404_and_buffer_nothing(
    client, django_capture_on_commit_callbacks, django_assert_num_queries, rds
):
    link = sent_link(django_capture_on_commit_callbacks)
    good = link_token(link.pk)
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    with django_assert_num_queries(0):
        assert client.get(f"/l/{forged}").status_code == 404
    unknown = link_token(link.pk + 99)
    with django_assert_num_queries(1):
        assert client.get(f"/l/{unknown}").status_code == 404
    with django_assert_num_queries(0):  # remembered as missing
        assert client.get(f"/l/{unknown}").status_code == 404
    assert rds.llen(PENDING) == 0
    clicks_flush()
    assert kinds() == []


def test_an_erased_contact_link_is_404_and_its_buffered_clicks_are_dropped(
    client, django_capture_on_commit_callbacks
):
    from messaging.privacy import contact_erase

    link = sent_link(django_capture_on_commit_callbacks)
    assert client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        contact_erase(contact=link.message.contact)
    assert client.get(f"/l/{link_token(link.pk)}").status_code == 404
    clicks_flush()
    assert kinds() == []


@time_machine.travel(NOW, tick=False)
def test_redis_down_falls_back_to_writing_the_click_directly(
    client, django_capture_on_commit_callbacks, settings
):
    link = sent_link(django_capture_on_commit_callbacks)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=PERSON)
    assert response.status_code == 302 and "utm_medium=sms" in response["Location"]
    assert kinds() == ["clicked"]


@time_machine.travel(NOW, tick=False)
def test_the_flush_statements_do_not_grow_with_the_batch(
    client, django_capture_on_commit_callbacks
):
    links = [
        sent_link(django_capture_on_commit_callbacks, phone=f"+1415555267{i}") for i in range(6)
    ]
    client.get(f"/l/{link_token(links[0].pk)}", HTTP_USER_AGENT=PERSON)
    with CaptureQueriesContext(connection) as one:
        clicks_flush()
    for link in links[1:]:
        for agent in (PERSON, "facebookexternalhit/1.1"):
            client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=agent)
    with CaptureQueriesContext(connection) as many:
        assert clicks_flush() == {"clicks": 10}
    assert len(many.captured_queries) == len(one.captured_queries)
    assert kinds() == ["clicked"] * 6 + ["clicked_bot"] * 5
