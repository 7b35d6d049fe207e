"""API key authentication with scopes: `Authorization: Api-Key <key>`."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from channels_app.ratelimit import redis_script

from .models import ApiKey

ALL_SCOPES = (
    "events:write",
    "events:read",
    "contacts:read",
    "contacts:write",
    "messages:read",
    "messages:write",
    "touchpoints:read",
    "journeys:read",
    "surveys:read",
    "webhooks:manage",
)
KEYWORD = "Api-Key"
logger = logging.getLogger(__name__)


# Verified keys, per process: {sha256 of the key: (ApiKey, generation seen, checked at)}.
# The generation is a token in the shared cache that changes whenever any ApiKey row is
# written (see `api_keys_changed`), so a revocation is seen by every process on its next request.
_verified: dict[str, tuple[ApiKey, str | None, float]] = {}
_verified_lock = threading.Lock()
GENERATION_KEY = "api-keys:generation"
# A backstop for writes no ORM hook sees (raw SQL): a cached verification is redone after this.
VERIFIED_MAX_AGE = 60.0
_VERIFIED_MAX_ENTRIES = 10_000
_UNAVAILABLE = "unavailable"
# How stale another process's view of the generation may be: a key revoked (or changed) in
# one process is refused by every other within this many seconds.
GENERATION_POLL_SECONDS = 1.0
_generation_seen: tuple[str | None, float] = (None, float("-inf"))


def api_keys_changed() -> None:
    """Forget every process's verified keys: now (the writer's own transaction) and again on
    commit (a request between the two would otherwise cache the row as it was before)."""

    def bump() -> None:
        global _generation_seen
        cache.set(GENERATION_KEY, uuid.uuid4().hex, None)
        with _verified_lock:
            _verified.clear()
            _generation_seen = (None, float("-inf"))

    bump()
    transaction.on_commit(bump, robust=True)


def _generation() -> str | None:
    """The shared generation token, read at most every GENERATION_POLL_SECONDS per process
    (a write in this process clears its own cache at once)."""
    global _generation_seen
    value, read_at = _generation_seen
    now = time.monotonic()
    if now - read_at < GENERATION_POLL_SECONDS:
        return value
    try:
        value = cache.get(GENERATION_KEY)
        if value is None:
            # First use, or Redis lost it (a restart, a flush): a fresh token, so that no
            # verification cached under the lost one (or under none) is trusted again.
            cache.add(GENERATION_KEY, uuid.uuid4().hex, None)
            value = cache.get(GENERATION_KEY)
    except Exception:  # the cache is down: verify against the database instead
        logger.warning("API key generation unavailable; verifying keys in the database")
        return _UNAVAILABLE
    _generation_seen = (value, now)
    return value


class ApiKeyAuthentication(BaseAuthentication):
    """Keys are stored hashed (djangorestframework-api-key); revoked or expired keys fail.

    A verified key is remembered per process until any ApiKey is written (a shared generation
    token, read at most once a second per process instead of a query and a hash per request),
    or for VERIFIED_MAX_AGE seconds at most. Revocation: immediate in the process that wrote
    it, within GENERATION_POLL_SECONDS (1 s) in every other."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed(f"Use 'Authorization: {KEYWORD} <key>'.")
        key = key.strip()
        digest = hashlib.sha256(key.encode()).hexdigest()
        generation = _generation()
        now = time.monotonic()
        hit = _verified.get(digest)
        if (
            hit is not None
            and generation != _UNAVAILABLE
            and hit[1] == generation
            and now - hit[2] < VERIFIED_MAX_AGE
            and not hit[0].has_expired
        ):
            return None, hit[0]
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        if api_key.has_expired:  # get_from_key already refused revoked keys and wrong secrets
            raise exceptions.AuthenticationFailed("The API key is revoked or expired.")
        if generation != _UNAVAILABLE:
            with _verified_lock:
                if len(_verified) >= _VERIFIED_MAX_ENTRIES:
                    _verified.clear()
                _verified[digest] = (api_key, generation, now)
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasScopedAPIKey(BasePermission):
    """An authenticated key holding the view's `required_scopes[method]`."""

    def has_permission(self, request: Request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated(f"Send 'Authorization: {KEYWORD} <key>'.")
        required = getattr(view, "required_scopes", {}).get(request.method)
        scopes = set(api_key.scopes or [])
        if required and required not in scopes and "*" not in scopes:
            raise exceptions.PermissionDenied(f"This API key lacks the scope {required!r}.")
        return True


# KEYS[1] = the key's bucket; ARGV = emission interval, period (both microseconds). GCRA:
# `period / interval` requests may come at once, then one per interval. Returns 0 (allowed) or
# the microseconds until the next request would be.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""
_local_tat: dict[str, float] = {}
_local_lock = threading.Lock()


def _parse_rate(rate: str) -> tuple[int, float]:
    count, _, unit = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit.strip()[0]]
    return int(count), float(seconds)


class ApiKeyRateThrottle(BaseThrottle):
    """Requests per API key, `API_RATE_LIMIT` ("1200/min": a burst of 1200, then 20/s), 429
    with Retry-After when over. A GCRA bucket in Redis (one script call per request, shared by
    every web process); in the process without Redis (the embedded default)."""

    scope = "api_key"
    THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    def allow_request(self, request: Request, view) -> bool:
        self._wait = 0.0
        if not isinstance(request.auth, ApiKey):
            return True
        count, period = _parse_rate(self.THROTTLE_RATES[self.scope])
        interval = period / count
        key = f"touchline:throttle:{self.scope}:{request.auth.prefix}"
        if settings.REDIS_URL:
            wait_us = redis_script(_GCRA)(keys=[key], args=[int(interval * 1e6), int(period * 1e6)])
            self._wait = wait_us / 1e6
        else:
            with _local_lock:
                now = time.monotonic()
                tat = _local_tat.get(key, now)
                if tat > now + period:  # the clock went back (tests travel in time): afresh
                    tat = now
                tat = max(tat, now) + interval
                if tat - period > now:
                    self._wait = tat - period - now
                else:
                    _local_tat[key] = tat
        return self._wait <= 0

    def wait(self) -> float | None:
        return self._wait or None
