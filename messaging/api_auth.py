"""API key authentication with scopes: `Authorization: Api-Key <key>`."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time

from django.conf import settings
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
    "templates:read",
    "templates:write",
    "journeys:read",
    "surveys:read",
    "segments:read",
    "segments:write",
    "imports:read",
    "imports:write",
    "broadcasts:read",
    "broadcasts:write",
    "broadcasts:transactional",
    "webhooks:manage",
    "reports:read",
)
KEYWORD = "Api-Key"
logger = logging.getLogger(__name__)


# Verified keys, per process: {sha256 of the key: (its ApiKey's pk, that row's hashed_key)}.
# Only the expensive part is remembered: that this secret matches the stored hash. Whether
# the key may still be used is read on every request, one read of its row by primary key,
# so a revocation, an expiry, a deletion or a scope change (in any process, by the admin, an
# ORM update or raw SQL) bites on the very next request everywhere, with no token to keep
# in step and nothing a Redis flush could revive.
_verified: dict[str, tuple[int, str]] = {}
_verified_lock = threading.Lock()
_VERIFIED_MAX_ENTRIES = 10_000


# Failed authentications are counted per client address and per key prefix, a GCRA bucket
# each: API_AUTH_FAILURE_LIMIT failures at once, then one per window / limit. KEYS = the
# buckets; ARGV = interval, period (microseconds), 1 to count a failure or 0 only to look.
# Returns the microseconds until the fullest bucket takes another failure (0: now).
_FAILURES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local worst = 0
for _, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local wait = tat + interval - period - now
  if wait > worst then worst = wait end
  if ARGV[3] == '1' and wait <= 0 then
    redis.call('SET', key, tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
  end
end
return worst
"""
FAILURES_NAMESPACE = "touchline:auth-failures:"
_PREFIX_SHAPE = re.compile(r"[A-Za-z0-9]{1,16}")  # djangorestframework-api-key's are 8
_local_failures: dict[str, float] = {}
_local_failures_lock = threading.Lock()
_LOCAL_FAILURES_MAX = 10_000


def _failure_buckets(request: Request, key: str) -> list[str]:
    """The client's address (DRF's ident: REMOTE_ADDR, or X-Forwarded-For behind
    NUM_PROXIES proxies) and, when the key has one, its prefix."""
    buckets = [f"{FAILURES_NAMESPACE}ip:{BaseThrottle().get_ident(request)}"]
    prefix, dot, _ = key.partition(".")
    if dot and _PREFIX_SHAPE.fullmatch(prefix):
        buckets.append(f"{FAILURES_NAMESPACE}prefix:{prefix}")
    return buckets


def _failures(buckets: list[str], *, count: bool) -> float:
    """Seconds until these buckets take another failure (0: now); with `count`, one more
    failure is counted in each bucket that has room. Redis when configured (shared by every
    web process), else in this process; a Redis error lets the request through (logged)."""
    limit = settings.API_AUTH_FAILURE_LIMIT
    if limit <= 0:
        return 0.0
    period = float(settings.API_AUTH_FAILURE_WINDOW_SECONDS)
    interval = period / limit
    if settings.REDIS_URL:
        try:
            wait_us = redis_script(_FAILURES)(
                keys=buckets, args=[int(interval * 1e6), int(period * 1e6), int(count)]
            )
        except Exception:
            logger.warning("Could not count failed API authentications", exc_info=True)
            return 0.0
        return wait_us / 1e6
    with _local_failures_lock:
        now = time.monotonic()
        if len(_local_failures) > _LOCAL_FAILURES_MAX:
            for bucket in [b for b, tat in _local_failures.items() if tat <= now]:
                del _local_failures[bucket]
        worst = 0.0
        for bucket in buckets:
            tat = _local_failures.get(bucket, now)
            if tat > now + period:  # the clock went back (tests travel in time): afresh
                tat = now
            tat = max(tat, now)
            wait = tat + interval - period - now
            worst = max(worst, wait)
            if count and wait <= 0:
                _local_failures[bucket] = tat + interval
        return worst


def auth_failures_forget() -> None:
    """Forget every counted failure (an operator unblocking clients; tests)."""
    with _local_failures_lock:
        _local_failures.clear()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        for bucket in client.scan_iter(match=f"{FAILURES_NAMESPACE}*", count=1000):
            client.delete(bucket)


def _not_throttled(buckets: list[str]) -> None:
    wait = _failures(buckets, count=False)
    if wait > 0:
        raise exceptions.Throttled(
            wait=math.ceil(wait), detail="Too many failed authentications from this client."
        )


def _failed(buckets: list[str], message: str) -> exceptions.AuthenticationFailed:
    _failures(buckets, count=True)
    return exceptions.AuthenticationFailed(message)


class ApiKeyAuthentication(BaseAuthentication):
    """Keys are stored hashed (djangorestframework-api-key); revoked or expired keys fail.

    A verified key's hash check is remembered per process; its row is read again on every
    request (one indexed read), so revoking a key takes effect on the next request in every
    process. Failed attempts are counted per client address and per key prefix: past
    API_AUTH_FAILURE_LIMIT per API_AUTH_FAILURE_WINDOW_SECONDS the client gets 429 with
    Retry-After, before any key is looked up."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme != KEYWORD or not key:
            buckets = _failure_buckets(request, "")
            _not_throttled(buckets)
            raise _failed(buckets, f"Use 'Authorization: {KEYWORD} <key>'.")
        digest = hashlib.sha256(key.encode()).hexdigest()
        hit = _verified.get(digest)
        if hit is not None:
            # A secret this process verified is no guess: no failure bucket is looked at, so
            # a client guessing at a key's prefix does not lock its owner out here.
            pk, hashed_key = hit
            api_key = next(iter(ApiKey.objects.filter(pk=pk).order_by()[:1]), None)
            if api_key is not None and api_key.hashed_key == hashed_key:
                if api_key.revoked or api_key.has_expired:
                    raise _failed(
                        _failure_buckets(request, key), "The API key is revoked or expired."
                    )
                return None, api_key
            with _verified_lock:  # deleted, or given a new secret: verify from scratch
                _verified.pop(digest, None)
        buckets = _failure_buckets(request, key)
        _not_throttled(buckets)
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            raise _failed(buckets, "The API key is not valid.") from None
        if api_key.has_expired:  # get_from_key already refused revoked keys and wrong secrets
            raise _failed(buckets, "The API key is revoked or expired.")
        with _verified_lock:
            if len(_verified) >= _VERIFIED_MAX_ENTRIES:
                _verified.clear()
            _verified[digest] = (api_key.pk, api_key.hashed_key)
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasScopedAPIKey(BasePermission):
    """An authenticated key holding the view's `required_scopes[method]`."""

    def has_permission(self, request: Request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated(f"Send 'Authorization: {KEYWORD} <key>'.")
        # HEAD runs the view's GET code, so it needs GET's scope.
        method = "GET" if request.method == "HEAD" else request.method
        by_method = getattr(view, "required_scopes", None) or {}
        if (
            by_method
            and method not in by_method
            and method != "OPTIONS"
            and hasattr(view, method.lower())
        ):
            # A handler no scope grants: refused, never let through unscoped.
            raise exceptions.PermissionDenied(f"No API key scope allows {method} here.")
        required = by_method.get(method)
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
