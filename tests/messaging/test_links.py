"""Tracked links: rewritten at send time, redirected with UTM, clicks recorded once. Every
test runs on both click paths: buffered in Redis and written by the flush (REDIS_URL set),
and written during the request (the embedded default)."""

from __future__ import annotations

import datetime as dt
import os
from urllib.parse import parse_qs, urlparse

import pytest
import time_machine

from messaging import services
from messaging.click_buffer import clicks_flush
from messaging.links import link_token
from messaging.models import Message, Touchpoint, TrackedLink
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 2, 10, 0, 20, tzinfo=dt.UTC)
PATHS = ["buffered", "direct"] if os.environ.get("REDIS_URL") else ["direct"]


@pytest.fixture(autouse=True, params=PATHS)
def click_path(request, settings) -> str:
    if request.param == "direct":
        settings.REDIS_URL = ""
    return request.param


def send(channel="sms", **kwargs):
    contact = kwargs.pop("contact", None) or ContactFactory(
        first_name="Ada", phone="+14155552671", email="ada@example.com"
    )
    message, _ = services.message_create(contact=contact, channel=channel, **kwargs)
    return message


def short(settings, link):
    return f"{settings.PUBLIC_BASE_URL}/l/{link_token(link.pk)}"


def test_sms_body_is_stored_with_short_links(settings):
    message = send(
        body="Hi {{ contact.first_name }}, see https://shop.example/a?x=1. Or http://b.example"
    )
    links = list(TrackedLink.objects.filter(message=message).order_by("position"))
    assert [(link.url, link.position) for link in links] == [
        ("https://shop.example/a?x=1", 0),
        ("http://b.example", 1),
    ]
    message.refresh_from_db()
    assert (
        message.body == f"Hi Ada, see {short(settings, links[0])}. Or {short(settings, links[1])}"
    )
    assert all(len(link_token(link.pk)) <= 16 for link in links)


def test_email_text_and_html_hrefs_rewritten_text_outside_href_untouched(settings):
    html = (
        '<p>Visit https://shop.example/text</p><a class="b" href="https://shop.example/p?a=1&amp;b=2">'
        "https://shop.example/shown</a><a href='mailto:x@example.com'>m</a>"
        f'<a href="{settings.PUBLIC_BASE_URL}/unsubscribe/x">u</a>'
    )
    message = send("email", subject="S", body="Text https://shop.example/t", html_body=html)
    links = {link.url: link for link in TrackedLink.objects.filter(message=message)}
    assert set(links) == {"https://shop.example/t", "https://shop.example/p?a=1&b=2"}
    message.refresh_from_db()
    assert message.body == f"Text {short(settings, links['https://shop.example/t'])}"
    assert message.html_body == (
        '<p>Visit https://shop.example/text</p><a class="b" href="'
        f'{short(settings, links["https://shop.example/p?a=1&b=2"])}">'
        "https://shop.example/shown</a><a href='mailto:x@example.com'>m</a>"
        f'<a href="{settings.PUBLIC_BASE_URL}/unsubscribe/x">u</a>'
    )


def test_link_tracking_off_leaves_bodies_untouched(settings):
    settings.LINK_TRACKING = False
    message = send(body="See https://shop.example/a")
    message.refresh_from_db()
    assert message.body == "See https://shop.example/a"
    assert not TrackedLink.objects.exists()


def _sent_link(**kwargs):
    message = send(body="See https://shop.example/a?utm_source=news&k=v", **kwargs)
    Message.objects.filter(pk=message.pk).update(sent_at=NOW - dt.timedelta(minutes=5))
    return TrackedLink.objects.get(message=message)


def clicks(kind="clicked"):
    clicks_flush()  # what beat runs every CLICK_FLUSH_SECONDS (nothing to do when direct)
    return list(Touchpoint.objects.filter(kind=kind))


@time_machine.travel(NOW, tick=False)
def test_click_redirects_with_utm_and_records_once(client, django_assert_num_queries, click_path):
    link = _sent_link(metadata={"broadcast": "winter-sale"})
    # Direct: one indexed read, one insert. Buffered: the cache is filled when the message
    # commits (never, inside this test's transaction), so this first click reads the link.
    with django_assert_num_queries(2 if click_path == "direct" else 1):
        first = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT="Mozilla/5.0 (iPhone)")
    second = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT="Mozilla/5.0 (iPhone)")
    assert first.status_code == second.status_code == 302
    target = urlparse(first["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "shop.example", "/a")
    assert parse_qs(target.query) == {
        "utm_source": ["news"],  # the URL's own value is kept
        "k": ["v"],
        "utm_medium": ["sms"],
        "utm_campaign": ["winter-sale"],
    }
    [click] = clicks()
    assert click.message_id == link.message_id
    assert click.contact_id == link.message.contact_id
    assert click.data == {"link": link.pk, "url": link.url}


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    "ua", ["Slackbot-LinkExpanding 1.0", "WhatsApp/2.23", "Mozilla/5.0 (compatible; BingPreview)"]
)
def test_bot_user_agents_are_flagged_not_counted(client, ua):
    link = _sent_link()
    response = client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT=ua)
    assert response.status_code == 302
    assert clicks() == []
    [bot] = clicks("clicked_bot")
    assert bot.data["bot"] is True and bot.message_id == link.message_id


@time_machine.travel(NOW, tick=False)
def test_head_request_is_flagged_not_counted(client):
    link = _sent_link()
    assert client.head(f"/l/{link_token(link.pk)}").status_code == 302
    assert clicks() == [] and len(clicks("clicked_bot")) == 1


@time_machine.travel(NOW, tick=False)
def test_click_within_a_second_of_delivery_is_flagged(client):
    link = _sent_link()
    Message.objects.filter(pk=link.message_id).update(delivered_at=NOW - dt.timedelta(seconds=0.5))
    client.get(f"/l/{link_token(link.pk)}", HTTP_USER_AGENT="Mozilla/5.0")
    assert clicks() == [] and len(clicks("clicked_bot")) == 1


@pytest.mark.parametrize("token", ["forged", "1AAAAAAAA", "x" * 40, "1-2", "%C3%A9" * 9])
def test_forged_or_unknown_token_is_404_and_records_nothing(client, token):
    link = _sent_link()
    good = link_token(link.pk)
    for bad in (token, good[:-1] + ("A" if good[-1] != "A" else "B"), link_token(link.pk + 99)):
        response = client.get(f"/l/{bad}")
        assert response.status_code == 404
    clicks_flush()
    assert not Touchpoint.objects.filter(kind__startswith="clicked").exists()


def test_sms_through_twilio_simulator_carries_short_link(simulator, settings):
    message = send(body="Deal: https://shop.example/deal")
    assert services.message_deliver(message_id=message.pk).result == "sent"
    [received] = simulator.messages()
    link = TrackedLink.objects.get(message=message)
    assert received["body"] == f"Deal: {short(settings, link)}"
    assert "shop.example" not in received["body"]


def test_nul_in_token_is_a_clean_400_from_the_middleware(client):
    assert client.get("/l/%00abc").status_code == 400
    clicks_flush()
    assert not Touchpoint.objects.exists()


def test_erased_contact_links_forget_the_url_and_404(client):
    from messaging.privacy import contact_erase

    link = _sent_link()
    contact_erase(contact=link.message.contact)
    link.refresh_from_db()
    assert link.url == ""
    assert client.get(f"/l/{link_token(link.pk)}").status_code == 404
    clicks_flush()
    assert not Touchpoint.objects.filter(kind__startswith="clicked").exists()


def test_whatsapp_content_template_variables_are_not_rewritten():
    from tests.factories import TemplateFactory

    template = TemplateFactory(
        channel="whatsapp",
        body="Track it: https://shop.example/t",
        content_sid="HX0123456789abcdef0123456789abcdef",
        content_variables={"1": "https://shop.example/v"},
    )
    contact = ContactFactory(whatsapp="+14155552672", first_name="Ada")
    message = send("whatsapp", contact=contact, template=template)
    message.refresh_from_db()
    assert message.content_variables == {"1": "https://shop.example/v"}
    assert [link.url for link in TrackedLink.objects.filter(message=message)] == [
        "https://shop.example/t"
    ]


def test_email_through_sendgrid_simulator_carries_short_links(simulator, settings):
    message = send(
        "email",
        subject="Hi",
        body="Shop at https://shop.example/text",
        html_body='<a href="https://shop.example/html">Shop</a>',
    )
    assert services.message_deliver(message_id=message.pk).result == "sent"
    [received] = simulator.messages()
    text, html = TrackedLink.objects.filter(message=message).order_by("position")
    assert received["body"] == f"Shop at {short(settings, text)}"
    assert received["html"] == f'<a href="{short(settings, html)}">Shop</a>'


def test_html_after_unusual_line_breaks_still_rewritten(settings):
    html = '<p>a\nb\u2028c\x0cd</p>\n<a\nhref=https://shop.example/x>x</a> <A HREF="HTTPS://S.example">y</A>'
    message = send("email", subject="S", html_body=html)
    x, s = TrackedLink.objects.filter(message=message).order_by("position")
    assert (x.url, s.url) == ("https://shop.example/x", "HTTPS://S.example")
    message.refresh_from_db()
    assert message.html_body == (
        f'<p>a\nb\u2028c\x0cd</p>\n<a\nhref="{short(settings, x)}">x</a> '
        f'<A HREF="{short(settings, s)}">y</A>'
    )
