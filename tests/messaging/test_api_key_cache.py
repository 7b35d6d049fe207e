"""The API remembers, per process, that a key's secret matched its stored hash (the costly
part), and reads the key's row on every request (one indexed read): a revocation anywhere
takes effect on the very next request in every process. The throttle is a GCRA bucket per
key (Redis when configured, else in the process)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
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


def key_queries(client: APIClient) -> list[str]:
    """The queries a request made on the keys' table: "prefix" (the look-up whose secret is
    then checked against the stored hash) or "id" (the read of a verified key's row)."""
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/journeys/").status_code == 200
    return [
        "prefix" if '"messaging_apikey"."prefix" =' in q["sql"] else "id"
        for q in ctx.captured_queries
        if "messaging_apikey" in q["sql"]
    ]


def test_a_verified_key_is_read_again_but_not_verified_again(api_key):
    client = client_for(api_key)
    assert key_queries(client) == ["prefix"]
    assert key_queries(client) == ["id"]  # one indexed read, no hash check


@pytest.mark.parametrize("how", ["save", "update", "delete"])
def test_revocation_takes_effect_on_the_next_request(api_key, how):
    client = client_for(api_key)
    key_queries(client)
    assert key_queries(client) == ["id"]  # remembered
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
        assert key_queries(client) == ["id"]  # remembered
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


def test_a_revocation_no_hook_saw_is_refused_by_the_very_next_request(api_key):
    """Another process revoked the key (here: raw SQL, which no ORM hook or shared token in
    this process sees) while this process had it verified: refused at once, no time passing."""
    client = client_for(api_key)
    with time_machine.travel(timezone.now(), tick=False):
        key_queries(client)
        assert key_queries(client) == ["id"]  # verified and remembered
        with connection.cursor() as cursor:
            cursor.execute("UPDATE messaging_apikey SET revoked = true")
        response = client.get("/api/v1/journeys/")
    assert response.status_code == 401
    assert "revoked" in response.json()["errors"][0]["detail"]


def test_a_scope_taken_away_elsewhere_is_refused_by_the_very_next_request(api_key):
    client = client_for(api_key)
    with time_machine.travel(timezone.now(), tick=False):
        key_queries(client)
        with connection.cursor() as cursor:
            cursor.execute("""UPDATE messaging_apikey SET scopes = '["events:write"]'""")
        assert client.get("/api/v1/journeys/").status_code == 403


def test_a_key_given_a_new_secret_is_verified_again(api_key):
    """The remembered hash check holds only for the row's hash it was made against."""
    client = client_for(api_key)
    key_queries(client)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE messaging_apikey SET hashed_key = 'something-else'")
    assert client.get("/api/v1/journeys/").status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="two processes on one database")
def test_a_key_revoked_by_another_process_is_refused_by_the_next_request_here(api_key):
    """A real second process revokes the key the way the admin does (the model's save);
    this process, which had the key verified, refuses its very next request."""
    from tests.faults.conftest import database_url

    prefix = api_key.split(".")[0]
    client = client_for(api_key)
    with time_machine.travel(timezone.now(), tick=False):
        key_queries(client)
        assert key_queries(client) == ["id"]
        revoke = (
            "from messaging.models import ApiKey; "
            f"k = ApiKey.objects.get(prefix={prefix!r}); k.revoked = True; k.save()"
        )
        env = {**os.environ, "DATABASE_URL": database_url()}
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", revoke],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=120,
        )
        assert client.get("/api/v1/journeys/").status_code == 401
