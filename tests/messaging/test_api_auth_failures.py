"""Repeated failed API-key authentication is throttled: by client address and by key
prefix, API_AUTH_FAILURE_LIMIT failures per API_AUTH_FAILURE_WINDOW_SECONDS, then 429 with
Retry-After (a GCRA bucket in Redis, or in the process on the embedded default). Other
clients are not affected."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from messaging import api_auth
from messaging.models import ApiKey

pytestmark = pytest.mark.django_db

LIMIT = 3
WINDOW = 60


@pytest.fixture(params=["redis", "in-process"])
def limits(request, settings):
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("needs REDIS_URL (the embedded default has no Redis)")
    else:
        settings.REDIS_URL = ""
    settings.API_AUTH_FAILURE_LIMIT = LIMIT
    settings.API_AUTH_FAILURE_WINDOW_SECONDS = WINDOW
    api_auth.auth_failures_forget()
    yield
    api_auth.auth_failures_forget()


def get(key: str, ip: str, **headers):
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client.get("/api/v1/journeys/", **headers)


def new_key() -> str:
    return ApiKey.objects.create_key(name="t", scopes=["journeys:read"])[1]


def wrong_secret(key: str) -> str:
    prefix, _, secret = key.partition(".")
    return f"{prefix}.{'x' * len(secret)}"


def test_one_client_guessing_keys_gets_429_with_retry_after(limits):
    guesses = [wrong_secret(new_key()) for _ in range(LIMIT + 1)]  # other prefixes each time
    assert [get(g, "203.0.113.7").status_code for g in guesses[:LIMIT]] == [401] * LIMIT

    throttled = get(guesses[LIMIT], "203.0.113.7")
    assert throttled.status_code == 429
    # LIMIT failures per WINDOW: the next is allowed WINDOW / LIMIT seconds later
    assert 0 < int(throttled["Retry-After"]) <= WINDOW // LIMIT
    assert throttled.json()["errors"][0]["code"] == "throttled"
    # Even a valid key is not tried from there until then (a guess that hit would pass).
    assert get(new_key(), "203.0.113.7").status_code == 429
    # A forged X-Forwarded-For is not a way out (no proxy is configured in front).
    assert get(guesses[0], "203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 429


def test_another_client_is_not_affected(limits):
    for _ in range(LIMIT + 1):
        get("nope.nope", "203.0.113.7")
    assert get("nope.nope", "203.0.113.7").status_code == 429
    assert get(new_key(), "198.51.100.20").status_code == 200


def test_guessing_one_keys_secret_from_many_addresses_is_throttled_by_its_prefix(limits):
    key = new_key()
    guess = wrong_secret(key)
    codes = [get(guess, f"198.51.100.{n}").status_code for n in range(1, LIMIT + 2)]
    assert codes == [401] * LIMIT + [429]
    # Another key's owner is not affected.
    assert get(new_key(), "198.51.100.50").status_code == 200


def test_the_owner_whose_key_is_already_verified_is_not_locked_out(limits):
    """The attempts counted against a prefix are guesses: a secret this process has already
    verified is not one, so a known-good client keeps working while its prefix is guessed."""
    key = new_key()
    assert get(key, "192.0.2.1").status_code == 200
    for n in range(1, LIMIT + 2):
        get(wrong_secret(key), f"198.51.100.{n}")
    assert get(wrong_secret(key), "198.51.100.99").status_code == 429
    assert get(key, "192.0.2.1").status_code == 200


def test_failures_below_the_limit_then_success_are_fine(limits):
    key = new_key()
    for _ in range(LIMIT - 1):
        assert get("nope.nope", "203.0.113.8").status_code == 401
    assert get(key, "203.0.113.8").status_code == 200


def test_off_when_the_limit_is_zero(limits, settings):
    settings.API_AUTH_FAILURE_LIMIT = 0
    codes = {get("nope.nope", "203.0.113.9").status_code for _ in range(LIMIT + 2)}
    assert codes == {401}
