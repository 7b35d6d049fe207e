"""The hosted preference center (issue 14): `/preferences/<token>` with a signed per-contact
token, no login; channel and topic choices written through the consent services (ledger
source `preference_center`); CSRF; clean pages for bad, expired and erased links; the
"Manage preferences" footer link and `{{ preferences_url }}` in marketing email."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core import signing
from django.test import Client
from django.utils import timezone

from messaging import services
from messaging.models import ConsentChange, Topic, TopicSubscription, Touchpoint
from messaging.policies import consent_status
from messaging.preferences import preferences_token, preferences_url, read_preferences_token
from messaging.privacy import contact_erase
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics():
    return (
        Topic.objects.create(slug="news", name="Monthly news", description="Once a month"),
        Topic.objects.create(slug="deals", name="Deals", default_subscribed=False, position=1),
        Topic.objects.create(slug="old", name="Retired topic", is_active=False),
    )


@pytest.fixture
def ada():
    contact = ContactFactory(
        first_name="Ada", email="ada@example.com", phone="+14155550100", whatsapp=""
    )
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    return contact


def page_url(contact) -> str:
    return f"/preferences/{preferences_token(contact_id=contact.pk)}"


def checked(html: str) -> set[str]:
    return set(re.findall(r'name="(\w+)" value="on" checked', html))


def form_state(client: Client, url: str) -> tuple[str, dict]:
    """The page and the POST a browser would send for it unchanged (CSRF token included)."""
    html = client.get(url).content.decode()
    data = {
        "csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1],
        "shown": re.findall(r'name="shown" value="(\w+)"', html),
        **dict(re.findall(r'name="(was_\w+)" value="(on|off)"', html)),
        **dict.fromkeys(checked(html), "on"),
    }
    return html, data


def test_the_token_names_the_contact_and_cannot_be_forged(ada):
    with time_machine.travel(timezone.now(), tick=False):  # the token carries the second
        token = preferences_token(contact_id=ada.pk)
        assert preferences_url(contact_id=ada.pk).endswith(f"/preferences/{token}")
    assert read_preferences_token(token) == ada.pk
    forged = signing.TimestampSigner(salt="another").sign_object({"c": ada.pk})
    for bad in (forged, token[:-2] + "xx", "nonsense", "", token.replace(":", "")):
        response = Client().get(f"/preferences/{bad}") if bad else None
        if response is not None:
            assert response.status_code == 404
            assert b"This link is not valid" in response.content
            assert b"Save preferences" not in response.content


def test_the_page_shows_the_contacts_channels_and_the_active_topics(ada, topics):
    response = Client().get(page_url(ada))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "same-origin"
    html = response.content.decode()
    assert "Email" in html and "Text messages (SMS)" in html
    assert "WhatsApp" not in html  # no WhatsApp number
    assert "Monthly news" in html and "Once a month" in html and "Deals" in html
    assert "Retired topic" not in html
    # email: marketing goes while not unsubscribed; SMS: subscribed; news opt-out; deals opt-in
    assert checked(html) == {"channel_email", "channel_sms", "topic_news"}
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<meta name="viewport"' in html


def test_saving_writes_only_the_changes_to_the_ledger(ada, topics):
    client = Client(enforce_csrf_checks=True)
    url = page_url(ada)
    _, data = form_state(client, url)
    data.pop("channel_sms")  # SMS off
    data.pop("topic_news")  # news off
    data["topic_deals"] = "on"  # deals on
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"].endswith("?saved=1")

    assert consent_status(contact=ada, channel="sms") == "unsubscribed"
    assert consent_status(contact=ada, channel="email") == "unknown"  # untouched
    subs = dict(TopicSubscription.objects.filter(contact=ada).values_list("topic__slug", "status"))
    assert subs == {"news": "unsubscribed", "deals": "subscribed"}
    ledger = ConsentChange.objects.filter(contact=ada)
    assert ledger.count() == 3
    assert set(ledger.values_list("source", flat=True)) == {"preference_center"}
    assert set(ledger.values_list("note", flat=True)) == {"preference center"}
    assert Touchpoint.objects.filter(contact=ada, kind="consent_changed").count() == 3
    unsub = Touchpoint.objects.get(contact=ada, kind="unsubscribed")
    assert (unsub.channel, unsub.data["source"]) == ("sms", "preference_center")

    confirmation = client.get(response["Location"]).content.decode()
    assert "Your preferences are saved." in confirmation
    assert checked(confirmation) == {"channel_email", "topic_deals"}

    # Saving the page again unchanged writes nothing.
    _, same = form_state(client, url)
    client.post(url, same)
    assert ConsentChange.objects.filter(contact=ada).count() == 3


def test_a_customer_may_resubscribe_a_channel_here(ada):
    services.consent_set(contact=ada, channel="sms", status="unsubscribed", source="keyword")
    client = Client()
    url = page_url(ada)
    html, data = form_state(client, url)
    assert "channel_sms" not in checked(html)
    data["channel_sms"] = "on"
    client.post(url, data)
    assert consent_status(contact=ada, channel="sms") == "subscribed"
    latest = ConsentChange.objects.filter(contact=ada).first()
    assert (latest.previous_status, latest.status, latest.source) == (
        "unsubscribed",
        "subscribed",
        "preference_center",
    )


def test_the_form_needs_the_csrf_token(ada, topics):
    client = Client(enforce_csrf_checks=True)
    url = page_url(ada)
    _, data = form_state(client, url)
    data.pop("csrfmiddlewaretoken")
    data.pop("channel_sms")
    assert client.post(url, data).status_code == 403
    assert consent_status(contact=ada, channel="sms") == "subscribed"
    assert not ConsentChange.objects.filter(contact=ada).exists()


def test_an_item_not_on_the_page_is_left_alone(ada, topics):
    """A topic activated after the page was drawn is not "unchecked" by the save."""
    client = Client()
    url = page_url(ada)
    _, data = form_state(client, url)
    Topic.objects.filter(slug="old").update(is_active=True)
    client.post(url, data)
    assert not TopicSubscription.objects.filter(contact=ada).exists()
    assert not ConsentChange.objects.filter(contact=ada).exists()


def test_a_page_left_open_across_a_stop_does_not_undo_it(ada, topics):
    """The customer opens the page, texts STOP, then unticks a topic on the page (SMS still
    ticked as drawn) and saves: the STOP stands, the topic change is written, and the page
    asks the customer to review SMS."""
    client = Client(enforce_csrf_checks=True)
    url = page_url(ada)
    _, data = form_state(client, url)
    assert data["channel_sms"] == "on" and data["was_channel_sms"] == "on"
    services.consent_set(contact=ada, channel="sms", status="unsubscribed", source="keyword")
    data.pop("topic_news")
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"].endswith("?changed=channel_sms")
    assert consent_status(contact=ada, channel="sms") == "unsubscribed"
    assert list(ConsentChange.objects.filter(contact=ada).values_list("source", "status")) == [
        ("preference_center", "unsubscribed"),  # the news topic, newest first
        ("keyword", "unsubscribed"),
    ]
    review = client.get(response["Location"]).content.decode()
    assert "This changed since you opened the page: Text messages (SMS)." in review
    assert "Your preferences are saved." not in review
    assert checked(review) == {"channel_email"}  # drawn again as it is now


def test_a_page_left_open_across_a_one_click_topic_unsubscribe_does_not_undo_it(ada, topics):
    client = Client()
    url = page_url(ada)
    _, data = form_state(client, url)
    assert data["topic_news"] == "on"
    news = topics[0]
    services.topic_subscription_set(
        contact=ada, topic=news, status="unsubscribed", source="one_click", note=""
    )
    data["topic_deals"] = "on"  # the customer's change elsewhere on the page is written
    response = client.post(url, data)
    assert response["Location"].endswith("?changed=topic_news")
    subs = dict(TopicSubscription.objects.filter(contact=ada).values_list("topic__slug", "status"))
    assert subs == {"news": "unsubscribed", "deals": "subscribed"}


def test_a_change_to_an_item_that_moved_meanwhile_is_not_written(ada):
    """Drawn unsubscribed, ticked by the customer, subscribed meanwhile by another source:
    nothing to write, and no second ledger row; the same the other way round."""
    services.consent_set(contact=ada, channel="sms", status="unsubscribed", source="keyword")
    client = Client()
    url = page_url(ada)
    _, data = form_state(client, url)
    assert data["was_channel_sms"] == "off"
    services.consent_set(contact=ada, channel="sms", status="subscribed", source="keyword")
    data["channel_sms"] = "on"
    response = client.post(url, data)
    assert response["Location"].endswith("?changed=channel_sms")
    assert not ConsentChange.objects.filter(contact=ada, source="preference_center").exists()


def test_a_form_without_the_drawn_state_writes_nothing(ada, topics):
    client = Client()
    url = page_url(ada)
    _, data = form_state(client, url)
    data = {k: v for k, v in data.items() if not k.startswith("was_")}
    data["topic_deals"] = "on"
    data.pop("channel_sms")
    response = client.post(url, data)
    assert "changed=channel_sms" in response["Location"]
    assert consent_status(contact=ada, channel="sms") == "subscribed"
    assert not ConsentChange.objects.filter(contact=ada).exists()


def test_an_expired_link_shows_a_clean_page(ada, settings):
    settings.PREFERENCES_LINK_MAX_AGE_DAYS = 30
    url = page_url(ada)
    with time_machine.travel(timezone.now() + timezone.timedelta(days=31)):
        response = Client().get(url)
        posted = Client().post(url, {"shown": ["channel_sms"]})
    assert response.status_code == 410 and b"This link has expired" in response.content
    assert posted.status_code == 410
    assert consent_status(contact=ada, channel="sms") == "subscribed"


def test_an_erased_contact_is_never_resubscribed(ada):
    url = page_url(ada)
    client = Client()
    _, data = form_state(client, url)
    contact_erase(contact=ada)
    data["channel_sms"] = "on"
    before = ConsentChange.objects.filter(contact=ada).count()
    response = client.post(url, data)
    assert response.status_code == 404 and b"This link is not valid" in response.content
    assert ConsentChange.objects.filter(contact=ada).count() == before


def test_everything_shown_is_escaped(ada):
    Topic.objects.create(
        slug="x", name="<script>alert(1)</script>", description='<img src=x onerror="y">'
    )
    ada.first_name = "<b>Ada</b>"
    ada.save()
    html = Client().get(page_url(ada)).content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>Ada" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_marketing_email_links_to_the_preference_center(settings):
    settings.PUBLIC_BASE_URL = "https://touchline.example"
    settings.LINK_TRACKING = False
    contact = ContactFactory()
    message, _ = services.message_create(
        contact=contact,
        channel="email",
        subject="News",
        body="Hello",
        html_body="<html><body><p>Hello</p></body></html>",
        category="marketing",
    )
    link = re.search(r"Manage preferences: (\S+)", message.body)[1]
    assert link.startswith("https://touchline.example/preferences/")
    assert read_preferences_token(link.rsplit("/", 1)[1]) == contact.pk
    assert "Unsubscribe: https://touchline.example/u/" in message.body
    assert (
        ">Manage preferences</a>" in message.html_body and ">Unsubscribe</a>" in message.html_body
    )
    assert message.html_body.index("Manage preferences") < message.html_body.index("</body>")

    transactional, _ = services.message_create(
        contact=contact, channel="email", subject="Receipt", body="Thanks", category="transactional"
    )
    assert "Manage preferences" not in transactional.body


def test_a_template_that_places_preferences_url_gets_no_second_link(settings):
    settings.LINK_TRACKING = False
    contact = ContactFactory()
    template = TemplateFactory(
        slug="news",
        channel="email",
        subject="News",
        body="Hello. Change what you get: {{ preferences_url }}",
        html_body="",
    )
    message, _ = services.message_create(
        contact=contact, channel="email", template=template, category="marketing"
    )
    assert message.body.count("/preferences/") == 1
    assert "Unsubscribe: " in message.body  # the unsubscribe link is still added
    sms = TemplateFactory(slug="n", channel="sms", body="Prefs: {{ preferences_url }}")
    text, _ = services.message_create(contact=contact, channel="sms", template=sms)
    assert re.search(r"Prefs: \S+/preferences/\S+", text.body)
