"""Subscription topics (issue 14): the ledger, the one policy engine refusing a send to a
contact off the topic (journeys, broadcasts, the delivery-time check), the broadcast dry run,
the segment condition, one-click unsubscribe from a topic, privacy and the API."""

from __future__ import annotations

import pytest
from django.db.models import Q
from django.test import Client

from audiences.definition import DefinitionError, definition_compile, definition_validate
from campaigns import services as campaign_services
from campaigns.dryrun import broadcast_dry_run
from campaigns.models import BroadcastRecipient
from journeys.models import Journey, Step
from journeys.services import event_ingest
from messaging import policies, services
from messaging.models import (
    ApiKey,
    ConsentChange,
    Contact,
    Message,
    Topic,
    TopicSubscription,
    Touchpoint,
)
from messaging.privacy import contact_erase, contact_export
from messaging.services import MessageRequestError, topic_subscription_set
from tests.campaigns.broadcast_fixtures import (
    NOW,
    draft,
    marketer,
    people,
    static_segment,
    templates,
)
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def topic(slug: str = "newsletter", **fields) -> Topic:
    fields.setdefault("name", slug.title())
    return Topic.objects.create(slug=slug, **fields)


def unsubscribe(contact: Contact, t: Topic, source: str = "api") -> bool:
    return topic_subscription_set(contact=contact, topic=t, status="unsubscribed", source=source)


# --- the ledger ---------------------------------------------------------------------------


def test_a_topic_choice_is_one_row_and_a_ledger_entry_with_its_timeline_line():
    contact, news = ContactFactory(), topic()
    assert unsubscribe(contact, news, source="preference_center") is True
    assert unsubscribe(contact, news) is False  # unchanged: nothing more written

    row = TopicSubscription.objects.get(contact=contact, topic=news)
    assert (row.status, row.source) == ("unsubscribed", "preference_center")
    [change] = ConsentChange.objects.filter(contact=contact)
    assert (change.topic, change.channel) == (news, "")
    assert (change.previous_status, change.status) == ("unknown", "unsubscribed")
    assert change.source == "preference_center"
    [tp] = Touchpoint.objects.filter(contact=contact, kind="consent_changed")
    assert tp.data["topic"] == "newsletter" and tp.data["status"] == "unsubscribed"

    assert topic_subscription_set(contact=contact, topic=news, status="subscribed", source="api")
    assert TopicSubscription.objects.get(contact=contact, topic=news).status == "subscribed"
    assert ConsentChange.objects.filter(contact=contact, topic=news).count() == 2
    with pytest.raises(ValueError):
        topic_subscription_set(contact=contact, topic=news, status="unknown", source="api")


# --- the policy engine ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default_subscribed", "choice", "allowed"),
    [
        (True, None, True),  # opt-out topic: everyone until they unsubscribe
        (True, "subscribed", True),
        (True, "unsubscribed", False),
        (False, None, False),  # opt-in topic: only those who subscribed
        (False, "subscribed", True),
        (False, "unsubscribed", False),
    ],
)
def test_evaluate_send_honours_the_topic(default_subscribed, choice, allowed):
    contact = ContactFactory()
    t = topic(default_subscribed=default_subscribed)
    if choice:
        topic_subscription_set(contact=contact, topic=t, status=choice, source="api")
    decision = policies.evaluate_send(
        contact=contact,
        channel="email",
        category="marketing",
        address=contact.email,
        quiet_hours=None,
        topic=t,
    )
    assert decision.allowed is allowed
    if not allowed:
        assert decision.code == "topic" and "Newsletter" in decision.reason
    # Without a topic the same contact is as reachable as ever (transactional or not).
    for category in ("marketing", "transactional"):
        plain = policies.evaluate_send(
            contact=contact,
            channel="email",
            category=category,
            address=contact.email,
            quiet_hours=None,
        )
        assert plain.allowed


def test_a_journey_send_to_a_contact_off_its_topic_is_skipped_with_the_reason(
    simulator, django_capture_on_commit_callbacks
):
    news = topic(default_subscribed=False)
    TemplateFactory(slug="promo", channel="email", subject="News", body="Hello")
    journey = Journey.objects.create(
        name="News",
        slug="news",
        status="active",
        trigger_event="promo.started",
        category="marketing",
        topic=news,
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="promo",
        kind="send",
        config={"template": "promo", "channel": "email", "fallback_channels": []},
    )
    off, on = ContactFactory(email="off@example.com"), ContactFactory(email="on@example.com")
    topic_subscription_set(contact=on, topic=news, status="subscribed", source="api")
    with django_capture_on_commit_callbacks(execute=True):
        for contact in (off, on):
            event_ingest(name="promo.started", contact=contact, properties={})

    assert not Message.objects.filter(contact=off).exists()
    [skipped] = Touchpoint.objects.filter(contact=off, kind="send_skipped")
    assert "not subscribed" in skipped.data["reason"] and "News" in skipped.data["reason"]
    sent = Message.objects.get(contact=on)
    assert sent.topic == news and sent.status == "sent"
    assert [m["to"] for m in simulator.messages()] == ["on@example.com"]


def test_a_broadcast_skips_contacts_unsubscribed_from_its_topic_and_the_dry_run_says_so(
    simulator, django_capture_on_commit_callbacks
):
    news = topic()
    templates()
    staff = marketer()
    contacts = people(3)
    unsubscribe(contacts[0], news)
    broadcast = draft([static_segment(contacts)], topic=news, channel_order=["sms"])

    result = broadcast_dry_run(broadcast=broadcast, now=NOW)
    assert (result["sent"], result["skipped"]) == (2, 1)
    assert result["skipped_reasons"] == {"topic": 1}
    assert result["channels"][0]["skipped_reasons"] == {"topic": 1}

    campaign_services.broadcast_launch(broadcast=broadcast, actor=staff, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        campaign_services.run_due(now=NOW)
    row = BroadcastRecipient.objects.get(broadcast=broadcast, contact=contacts[0])
    assert row.state == "skipped" and "unsubscribed from topic 'Newsletter'" in row.reason
    assert Touchpoint.objects.filter(contact=contacts[0], kind="broadcast_skipped").exists()
    assert not Message.objects.filter(contact=contacts[0]).exists()
    assert Message.objects.filter(topic=news, status="sent").count() == 2
    assert len(simulator.messages()) == 2
    assert contacts[0].phone not in {m["to"] for m in simulator.messages()}


def test_the_delivery_task_checks_the_topic_again(simulator):
    """A choice made between queueing and the provider call still wins."""
    news, contact = topic(), ContactFactory()
    message, _ = services.message_create(
        contact=contact,
        channel="email",
        subject="News",
        body="Hello",
        category="marketing",
        topic=news,
    )
    assert message.status == "queued" and message.topic == news
    unsubscribe(contact, news)
    assert services.message_deliver(message_id=message.pk).result == "skipped"
    message.refresh_from_db()
    assert message.status == "skipped" and message.error_code == "topic"
    assert simulator.messages() == []


def test_one_click_on_a_topic_message_leaves_that_topic_only(simulator):
    news, contact = topic(), ContactFactory()
    ConsentFactory(contact=contact, channel="email", status="subscribed")
    message, _ = services.message_create(
        contact=contact,
        channel="email",
        subject="News",
        body="Hello",
        category="marketing",
        topic=news,
    )
    from messaging.unsubscribe import unsubscribe_token

    token = unsubscribe_token(contact_id=contact.pk, channel="email", message_id=message.pk)
    page = Client().get(f"/u/{token}")
    assert b"Stop receiving Newsletter" in page.content
    response = Client(enforce_csrf_checks=True).post(
        f"/u/{token}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200 and b"unsubscribed from Newsletter" in response.content
    assert TopicSubscription.objects.get(contact=contact, topic=news).status == "unsubscribed"
    assert policies.consent_status(contact=contact, channel="email") == "subscribed"
    change = ConsentChange.objects.get(contact=contact, topic=news)
    assert (change.source, change.message_id) == ("one_click", message.pk)


# --- segments -----------------------------------------------------------------------------


def members(definition: dict) -> set[str]:
    q = definition_compile(definition, now=NOW)
    return set(Contact.objects.filter(q).values_list("external_id", flat=True))


def test_the_topic_segment_condition_matches_the_policy_in_one_exists():
    optout, optin = topic("news"), topic("vip", default_subscribed=False)
    a, b, c = (ContactFactory(external_id=x) for x in "abc")
    unsubscribe(a, optout)
    topic_subscription_set(contact=b, topic=optin, status="subscribed", source="api")
    unsubscribe(c, optin)

    assert members({"topic": "news"}) == {"b", "c"}
    assert members({"topic": "news", "status": "subscribed"}) == {"b", "c"}
    assert members({"topic": "news", "status": "unsubscribed"}) == {"a"}
    assert members({"topic": "vip"}) == {"b"}
    assert members({"topic": "vip", "status": "unsubscribed"}) == {"a", "c"}
    assert members({"all": [{"topic": "news"}, {"topic": "vip"}]}) == {"b"}

    sql = str(Contact.objects.filter(definition_compile({"topic": "vip"}, now=NOW)).query)
    assert "EXISTS" in sql.upper() and "messaging_topicsubscription" in sql
    # The same answer as evaluate_send, contact by contact.
    for contact in Contact.objects.all():
        for t in (optout, optin):
            decision = policies.check_topic(
                status=policies.topic_status(contact=contact, topic=t), topic=t
            )
            matched = Contact.objects.filter(
                Q(pk=contact.pk) & definition_compile({"topic": t.slug}, now=NOW)
            ).exists()
            assert matched is decision.allowed


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        ({"topic": "nope"}, "topic"),
        ({"topic": ""}, "topic"),
        ({"topic": 3}, "topic"),
        ({"topic": "news", "status": "maybe"}, "status"),
        ({"topic": "news", "extra": 1}, "extra"),
    ],
)
def test_the_topic_condition_is_validated(definition, path):
    topic("news")
    with pytest.raises(DefinitionError) as caught:
        definition_validate(definition, slug=None, others={})
    assert any(p.endswith(path) for p in caught.value.errors), caught.value.errors


def test_the_visual_builder_offers_the_topics():
    from audiences.admin_builder import builder_options

    topic("news", name="News", position=2)
    topic("vip", name="VIP", position=1)
    assert builder_options(exclude=None)["topics"] == [
        {"slug": "vip", "name": "VIP"},
        {"slug": "news", "name": "News"},
    ]


# --- the STOP line on marketing SMS --------------------------------------------------------


def sms(contact: Contact, body: str, category: str = "marketing", channel: str = "sms"):
    message, _ = services.message_create(
        contact=contact, channel=channel, body=body, category=category
    )
    return message


def test_marketing_sms_gets_the_stop_line_and_it_counts_toward_segments(settings):
    from messaging.sms import sms_segments

    settings.LINK_TRACKING = False
    contact = ContactFactory(whatsapp="+14155550100")
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    body = "x" * 150  # one segment alone
    marketing = sms(contact, body)
    assert marketing.body == body + "\nReply STOP to opt out"
    assert sms_segments(body).segments == 1 and sms_segments(marketing.body).segments == 2

    assert sms(contact, "Sale today! Text stop to end.").body == "Sale today! Text stop to end."
    assert sms(contact, body, category="transactional").body == body
    assert sms(contact, body, channel="whatsapp", category="transactional").body == body
    settings.SMS_STOP_LINE = "STOP = opt out"
    assert sms(contact, "Hi").body == "Hi\nSTOP = opt out"
    settings.SMS_STOP_LINE = ""
    assert sms(contact, "Hi").body == "Hi"


@pytest.mark.parametrize(
    "body",
    [
        "Stop by our store today for 20% off!",
        "Don't stop shopping: 2 for 1 this weekend",
        "Non-stop deals all week",
        "Bus stop ads are back. STOP.",
    ],
)
def test_another_sense_of_stop_still_gets_the_stop_line(settings, body):
    from messaging.services.messages import with_stop_line

    assert with_stop_line(body) == f"{body}\nReply STOP to opt out"


@pytest.mark.parametrize(
    "body",
    [
        "Sale today! Reply STOP to opt out",
        "Sale today! Text stop to end.",
        "Sale today! txt STOP to unsubscribe",
        'Sale! Send "STOP" to 12345 to end these',
        "Sale!\nreply stop to opt out",  # the configured line, in any case
    ],
)
def test_a_body_that_already_says_how_to_opt_out_gets_no_second_line(settings, body):
    from messaging.services.messages import with_stop_line

    assert with_stop_line(body) == body
    settings.SMS_STOP_LINE = "Opt out: STOP"
    assert with_stop_line("Hi! Opt out: STOP") == "Hi! Opt out: STOP"
    assert with_stop_line("Stop by!") == "Stop by!\nOpt out: STOP"


def test_the_stop_line_counts_toward_the_1600_character_limit(settings):
    contact = ContactFactory()
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    fits_alone = "y" * 1590
    assert len(sms(contact, fits_alone, category="transactional").body) == 1590
    with pytest.raises(MessageRequestError) as caught:
        sms(contact, fits_alone)
    assert "1600" in str(caught.value.errors["body"])


def test_a_marketing_sms_to_the_provider_carries_the_stop_line(simulator):
    contact = ContactFactory(phone="+14155550123")
    ConsentFactory(contact=contact, channel="sms", status="subscribed")
    message = sms(contact, "Spring sale starts now")
    assert services.message_deliver(message_id=message.pk).result == "sent"
    [received] = simulator.messages()
    assert received["body"].endswith("\nReply STOP to opt out")


# --- privacy --------------------------------------------------------------------------------


def test_export_lists_topic_choices_and_erasure_removes_them():
    news, contact = topic(), ContactFactory()
    unsubscribe(contact, news)
    exported = contact_export(contact=contact)
    assert exported["topic_subscriptions"]["newsletter"]["status"] == "unsubscribed"
    assert exported["consent_history"][0]["topic"] == "newsletter"

    counts = contact_erase(contact=contact)
    assert counts["topic_subscriptions"] == 1
    assert not TopicSubscription.objects.filter(contact=contact).exists()
    assert ConsentChange.objects.filter(contact=contact, topic=news).exists()  # the ledger stays


# --- the API --------------------------------------------------------------------------------


def test_the_api_lists_topics_and_reads_and_writes_a_contacts_choices(api):
    topic("news", name="News", description="Monthly")
    topic("vip", name="VIP", default_subscribed=False, position=1)
    contact = ContactFactory(external_id="ada")

    listed = api.get("/api/v1/topics/")
    assert listed.status_code == 200
    assert [t["slug"] for t in listed.json()] == ["news", "vip"]
    assert listed.json()[0]["default_subscribed"] is True

    state = api.get("/api/v1/contacts/ada/topics/").json()["topics"]
    assert state == [
        {"topic": "news", "status": "unknown", "receives": True},
        {"topic": "vip", "status": "unknown", "receives": False},
    ]
    changed = api.post(
        "/api/v1/contacts/ada/topics/", {"topic": "vip", "status": "subscribed"}, format="json"
    )
    assert changed.status_code == 200
    assert changed.json()["topics"][1] == {"topic": "vip", "status": "subscribed", "receives": True}
    change = ConsentChange.objects.get(contact=contact)
    assert (change.topic.slug, change.source) == ("vip", "api")

    for body, field in [
        ({"topic": "nope", "status": "subscribed"}, "topic"),
        ({"topic": "vip", "status": "unknown"}, "status"),
        ({"topic": "vip", "status": "subscribed", "extra": 1}, "extra"),
        ({"topic": "v\x00ip", "status": "subscribed"}, "topic"),
    ]:
        bad = api.post("/api/v1/contacts/ada/topics/", body, format="json")
        assert bad.status_code == 400, bad.content
        assert field in {e["attr"] for e in bad.json()["errors"]}, bad.content
    assert ConsentChange.objects.filter(contact=contact).count() == 1
    assert api.get("/api/v1/contacts/nobody/topics/").status_code == 404


def test_topic_endpoints_need_the_contact_scopes():
    from rest_framework.test import APIClient

    topic("news")
    ContactFactory(external_id="ada")
    _, key = ApiKey.objects.create_key(name="read", scopes=["contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/topics/").status_code == 200
    assert client.get("/api/v1/contacts/ada/topics/").status_code == 200
    refused = client.post(
        "/api/v1/contacts/ada/topics/", {"topic": "news", "status": "unsubscribed"}, format="json"
    )
    assert refused.status_code == 403
    assert not TopicSubscription.objects.exists()
    _, other = ApiKey.objects.create_key(name="msgs", scopes=["messages:read"])
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {other}")
    assert client.get("/api/v1/topics/").status_code == 403


# --- the admin --------------------------------------------------------------------------------


def test_marketing_defines_topics_in_the_admin_and_it_is_audited(client):
    from django.contrib.auth.models import Group, User

    from audit.models import AuditEntry
    from journeys.staff_groups import ensure_staff_groups

    ensure_staff_groups()
    mara = User.objects.create_user("mara", password="pw-123456789", is_staff=True)
    mara.groups.add(Group.objects.get(name="Marketing"))
    client.force_login(mara)
    response = client.post(
        "/admin/messaging/topic/add/",
        {
            "name": "Product news",
            "slug": "product-news",
            "description": "What we ship",
            "default_subscribed": "",
            "is_active": "on",
            "position": "1",
        },
    )
    assert response.status_code == 302, response.content[:500]
    created = Topic.objects.get(slug="product-news")
    assert created.default_subscribed is False
    assert AuditEntry.objects.filter(
        action="create", object_type="messaging.topic", object_id=str(created.pk)
    ).exists()
    listing = client.get("/admin/messaging/topic/")
    assert b"opt-in (default off)" in listing.content


@pytest.mark.parametrize("group", ["Support", "Viewer"])
def test_other_roles_cannot_add_or_change_topics(client, group):
    from django.contrib.auth.models import Group, User

    from audit.models import AuditEntry
    from journeys.staff_groups import ensure_staff_groups

    ensure_staff_groups()
    news = topic()
    user = User.objects.create_user("sam", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    assert client.get("/admin/messaging/topic/").status_code == 200  # they may read them
    added = client.post("/admin/messaging/topic/add/", {"name": "X", "slug": "x", "position": 0})
    changed = client.post(
        f"/admin/messaging/topic/{news.pk}/change/",
        {"name": "Renamed", "position": 0, "is_active": "on"},
    )
    assert (added.status_code, changed.status_code) == (403, 403)
    assert list(Topic.objects.values_list("slug", "name")) == [("newsletter", "Newsletter")]
    assert not AuditEntry.objects.exists()


def test_the_broadcasts_api_names_a_topic(api):
    topic("news")
    templates()
    segment = static_segment(people(1))
    body = {
        "name": "News",
        "slug": "news-1",
        "segments": [segment.slug],
        "template_slug": "promo",
        "topic": "nope",
    }
    refused = api.post("/api/v1/broadcasts/", body, format="json")
    assert refused.status_code == 400
    assert "topic" in {e["attr"] for e in refused.json()["errors"]}
    created = api.post("/api/v1/broadcasts/", {**body, "topic": "news"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["topic"] == "news"
    from campaigns.models import Broadcast

    assert Broadcast.objects.get(slug="news-1").topic.slug == "news"
    cleared = api.patch("/api/v1/broadcasts/news-1/", {"topic": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["topic"] is None


def test_a_journeys_new_version_and_copy_keep_its_topic():
    from journeys.lifecycle import journey_copy

    news = topic()
    journey = Journey.objects.create(
        name="N", slug="n", status="active", trigger_event="x", category="marketing", topic=news
    )
    assert journey_copy(journey=journey).topic == news
    assert journey_copy(journey=journey, slug="n-copy").topic == news


def test_an_inactive_topic_is_refused_at_launch_and_activation(api):
    """An inactive topic is hidden from the preference center, so its recipients could not
    leave it there: a broadcast cannot launch (nor its draft be saved) naming one, and a
    journey cannot be activated with one."""
    from campaigns.errors import BroadcastError
    from journeys.lifecycle import journey_activate

    retired = topic("retired", is_active=False)
    templates()
    staff = marketer()
    contacts = people(2)
    broadcast = draft([static_segment(contacts)], topic=retired, channel_order=["sms"])
    with pytest.raises(BroadcastError) as caught:
        campaign_services.broadcast_launch(broadcast=broadcast, actor=staff, now=NOW)
    assert "inactive" in caught.value.errors["topic"][0]
    assert not BroadcastRecipient.objects.filter(broadcast=broadcast).exists()
    body = {
        "name": "Retired",
        "slug": "retired-1",
        "segments": [broadcast.segments.first().slug],
        "template_slug": "promo",
        "topic": "retired",
    }
    refused = api.post("/api/v1/broadcasts/", body, format="json")
    assert refused.status_code == 400, refused.content
    assert "topic" in {e["attr"] for e in refused.json()["errors"]}

    journey = Journey.objects.create(
        name="R", slug="r", status="draft", trigger_event="x", category="marketing", topic=retired
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="promo",
        kind="send",
        config={"template": "promo", "channel": "sms", "fallback_channels": []},
    )
    problems = journey_activate(journey=journey)
    assert any("inactive" in p for p in problems), problems
    journey.refresh_from_db()
    assert journey.status == "draft"
    Topic.objects.filter(pk=retired.pk).update(is_active=True)
    assert journey_activate(journey=journey) == []
