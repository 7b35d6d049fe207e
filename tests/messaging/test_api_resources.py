"""The public API around the core: lists with filters, consent, scopes, throttling, errors."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import ApiKey, ConsentChange
from messaging.services import consent_set, touchpoint_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def client_with(scopes):
    _, key = ApiKey.objects.create_key(name="scoped", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_contacts_list_filters(api):
    ContactFactory(external_id="a", email="a@example.com", attributes={"plan": "pro"})
    ContactFactory(
        external_id="b", email="b@example.com", phone="+14155552690", attributes={"plan": "free"}
    )
    ids = lambda r: [c["external_id"] for c in r.json()["results"]]  # noqa: E731
    assert ids(api.get("/api/v1/contacts/?email=A@example.com")) == ["a"]
    assert ids(api.get("/api/v1/contacts/?phone=%2B1%20415%20555%202690")) == ["b"]
    assert ids(api.get("/api/v1/contacts/?attribute=plan:pro")) == ["a"]
    assert sorted(ids(api.get("/api/v1/contacts/"))) == ["a", "b"]
    bad = api.get("/api/v1/contacts/?attribute=nocolon")
    assert bad.status_code == 400 and bad.json()["errors"][0]["attr"] == "attribute"
    assert api.get("/api/v1/contacts/?phone=123").status_code == 400


def test_consent_read_and_change_with_source_api(api):
    contact = ContactFactory(external_id="c")
    consent_set(contact=contact, channel="email", status="subscribed", source="admin")
    body = api.get("/api/v1/contacts/c/consent/").json()
    assert body["consent"] == {"sms": "unknown", "whatsapp": "unknown", "email": "subscribed"}
    changed = api.post(
        "/api/v1/contacts/c/consent/",
        {"channel": "sms", "status": "unsubscribed", "note": "phone call"},
        format="json",
    )
    assert changed.status_code == 200
    assert changed.json()["consent"]["sms"] == "unsubscribed"
    assert changed.json()["history"][0]["source"] == "api"
    assert ConsentChange.objects.filter(contact=contact, source="api").count() == 1
    bad = api.post("/api/v1/contacts/c/consent/", {"channel": "fax", "status": "x"}, format="json")
    assert {e["attr"] for e in bad.json()["errors"]} == {"channel", "status"}


def test_messages_list_by_contact_and_status(api, simulator):
    from messaging.services import message_create

    contact = ContactFactory(external_id="m")
    sent, _ = message_create(contact=contact, channel="sms", body="one")
    consent_set(contact=contact, channel="email", status="unsubscribed", source="api")
    skipped, _ = message_create(contact=contact, channel="email", subject="s", body="two")
    listed = api.get("/api/v1/messages/?contact=m&status=skipped").json()["results"]
    assert [m["id"] for m in listed] == [str(skipped.pk)]
    assert len(api.get("/api/v1/messages/?contact=m").json()["results"]) == 2
    assert api.get("/api/v1/messages/?status=nope").status_code == 400
    assert sent.pk


def test_touchpoints_filters_and_stable_cursor(api):
    contact = ContactFactory(external_id="t")
    other = ContactFactory(external_id="u")
    now = timezone.now()
    for i in range(5):
        touchpoint_record(
            contact_id=contact.pk,
            kind="event",
            occurred_at=now,
            data={"journey": "post-purchase" if i % 2 else "x", "i": i},
        )
    touchpoint_record(contact_id=other.pk, kind="sent", channel="sms", occurred_at=now)
    page1 = api.get("/api/v1/touchpoints/?contact=t&page_size=3").json()
    page2 = api.get(page1["next"]).json()
    seen = [t["data"]["i"] for t in page1["results"] + page2["results"]]
    assert sorted(seen) == [0, 1, 2, 3, 4] and len(set(seen)) == 5  # same timestamp, no dupes
    journey = api.get("/api/v1/touchpoints/?journey=post-purchase").json()["results"]
    assert sorted(t["data"]["i"] for t in journey) == [1, 3]
    assert [t["kind"] for t in api.get("/api/v1/touchpoints/?channel=sms").json()["results"]] == [
        "sent"
    ]
    later = (now + timezone.timedelta(seconds=1)).isoformat()
    assert api.get("/api/v1/touchpoints/", {"since": later}).json()["results"] == []
    assert api.get("/api/v1/touchpoints/?since=yesterday").status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", "/api/v1/contacts/", "contacts:read"),
        ("put", "/api/v1/contacts/x/", "contacts:write"),
        ("post", "/api/v1/events/", "events:write"),
        ("get", "/api/v1/touchpoints/", "touchpoints:read"),
        ("get", "/api/v1/journeys/", "journeys:read"),
        ("get", "/api/v1/survey-responses/", "surveys:read"),
        ("get", "/api/v1/messages/", "messages:read"),
    ],
)
def test_a_call_outside_its_scope_names_the_missing_scope(method, path, scope):
    client = client_with(["messages:write"] if scope != "messages:write" else ["contacts:read"])
    response = getattr(client, method)(path, {}, format="json")
    assert response.status_code == 403
    assert scope in response.json()["errors"][0]["detail"]


def test_revoked_key_is_refused(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    assert client.get("/api/v1/contacts/").status_code == 200
    ApiKey.objects.filter(prefix=api_key.split(".")[0]).update(revoked=True)
    response = client.get("/api/v1/contacts/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_throttling_per_key_with_retry_after(settings):
    from messaging.api_auth import ApiKeyRateThrottle

    cache.clear()
    old = ApiKeyRateThrottle.THROTTLE_RATES
    ApiKeyRateThrottle.THROTTLE_RATES = {"api_key": "3/min"}
    try:
        first, second = client_with(["contacts:read"]), client_with(["contacts:read"])
        codes = [first.get("/api/v1/contacts/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = first.get("/api/v1/contacts/")
        assert limited.status_code == 429
        assert int(limited["Retry-After"]) > 0
        assert limited.json()["type"] == "client_error"
        assert second.get("/api/v1/contacts/").status_code == 200  # per key, not global
    finally:
        ApiKeyRateThrottle.THROTTLE_RATES = old


def test_throttle_counts_live_in_the_shared_cache(settings):
    # In CI REDIS_URL is set: the counts are in Redis, shared by every web process.
    if settings.REDIS_URL:
        assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
        cache.set("touchline-probe", 1)
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        assert any(b"touchline-probe" in key for key in client.keys("*touchline-probe*"))
    else:
        assert settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


def test_body_over_the_limit_is_413(api, settings):
    settings.API_MAX_BODY_BYTES = 1000
    response = api.generic(
        "POST",
        "/api/v1/events/",
        b'{"name": "' + b"x" * 2000 + b'"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"),
    [
        ("delete", "/api/v1/messages/", None, None, 405),
        ("post", "/api/v1/events/", "name=x", "application/x-www-form-urlencoded", 415),
        ("get", "/api/v1/contacts/nobody/", None, None, 404),
        ("post", "/api/v1/events/", "{", "application/json", 400),
    ],
)
def test_every_error_has_one_format(api, method, path, body, content_type, status):
    kwargs = {"content_type": content_type} if content_type else {}
    response = api.generic(method.upper(), path, body or "", **kwargs)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] in ("client_error", "validation_error")
    assert payload["errors"] and {"code", "detail", "attr"} <= set(payload["errors"][0])
