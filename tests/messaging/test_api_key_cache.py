"""The API remembers verified keys per process (no query per request), and forgets them as
soon as any key is written: revocation takes effect on the next request. The throttle is a
GCRA bucket per key (Redis when configured, else in the process)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from messaging import api_auth
from messaging.models import ApiKey

pytestmark = pytest.mark.django_db


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def key_queries(client: APIClient) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/journeys/").status_code == 200
    return sum("messaging_apikey" in q["sql"] for q in ctx.captured_queries)


def test_a_verified_key_is_not_looked_up_again(api_key):
    client = client_for(api_key)
    assert key_queries(client) == 1
    assert key_queries(client) == 0


@pytest.mark.parametrize("how", ["save", "update", "delete"])
def test_revocation_takes_effect_on_the_next_request(api_key, how):
    client = client_for(api_key)
    key_queries(client)
    assert key_queries(client) == 0  # remembered
    stored = ApiKey.objects.get(prefix=api_key.split(".")[0])
    if how == "save":  # the admin's path
        stored.revoked = True
        stored.save()
    elif how == "update":
        ApiKey.objects.filter(pk=stored.pk).update(revoked=True)
    else:
        stored.delete()
    response = client.get("/api/v1/journeys/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_a_key_past_its_expiry_is_refused_even_when_remembered(db):
    now = timezone.now()
    _, key = ApiKey.objects.create_key(
        name="t", scopes=["journeys:read"], expiry_date=now + timedelta(minutes=5)
    )
    client = client_for(key)
    with time_machine.travel(now, tick=False):
        key_queries(client)
        assert key_queries(client) == 0  # remembered
    with time_machine.travel(now + timedelta(minutes=6), tick=False):
        assert client.get("/api/v1/journeys/").status_code == 401


def test_a_wrong_secret_with_a_known_prefix_is_refused(api_key):
    client_for(api_key).get("/api/v1/journeys/")  # the real key is remembered
    prefix, _, secret = api_key.partition(".")
    forged = f"{prefix}.{'x' * len(secret)}"
    assert client_for(forged).get("/api/v1/journeys/").status_code == 401


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "in-process"])
def test_throttle_429_with_retry_after(settings, redis):
    if redis and not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    if not redis:
        settings.REDIS_URL = ""
    old = api_auth.ApiKeyRateThrottle.THROTTLE_RATES
    api_auth.ApiKeyRateThrottle.THROTTLE_RATES = {"api_key": "2/min"}
    try:
        _, key = ApiKey.objects.create_key(name="t", scopes=["journeys:read"])
        _, other = ApiKey.objects.create_key(name="u", scopes=["journeys:read"])
        client = client_for(key)
        codes = [client.get("/api/v1/journeys/").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.get("/api/v1/journeys/")
        # 2/min: one request every 30 s once the burst of 2 is spent
        assert 0 < int(limited["Retry-After"]) <= 30
        assert client_for(other).get("/api/v1/journeys/").status_code == 200
    finally:
        api_auth.ApiKeyRateThrottle.THROTTLE_RATES = old


def test_a_revocation_by_another_process_is_seen_within_a_second(api_key):
    from django.core.cache import cache

    client = client_for(api_key)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        key_queries(client)
        assert key_queries(client) == 0
        # Another web process revokes the key: the row changes and so does the shared
        # generation, but this process's remembered key is untouched.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE messaging_apikey SET revoked = true")
        cache.set(api_auth.GENERATION_KEY, "changed-elsewhere", None)
        traveller.shift(api_auth.GENERATION_POLL_SECONDS + 0.1)
        assert client.get("/api/v1/journeys/").status_code == 401


def test_a_lost_generation_token_never_revives_a_revoked_key(api_key):
    """Redis restarted or flushed (the token gone) around a revocation no ORM hook saw: the
    process must not trust what it verified under the lost token."""
    from django.core.cache import cache

    client = client_for(api_key)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        cache.delete(api_auth.GENERATION_KEY)  # Redis empty before the first request
        traveller.shift(api_auth.GENERATION_POLL_SECONDS + 0.1)
        key_queries(client)
        assert key_queries(client) == 0  # remembered
        with connection.cursor() as cursor:  # revoked where no hook sees it
            cursor.execute("UPDATE messaging_apikey SET revoked = true")
        cache.delete(api_auth.GENERATION_KEY)  # and Redis restarts empty again
        traveller.shift(api_auth.GENERATION_POLL_SECONDS + 0.1)
        assert client.get("/api/v1/journeys/").status_code == 401
