"""A global per-sender rate limit (GCRA token bucket in Redis), shared by every worker.

Providers cap each sender: a US long code sends about 1 message/s, WhatsApp 80/s. Each send
reserves the next free slot of its sender; a worker sleeps until its slot when that is close,
or hands the message back to the queue when it is far. Without Redis (the embedded default) the
bucket lives in the process, which is exact for the single worker process `make run` starts.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass

from django.conf import settings

# KEYS[1] = bucket; ARGV = interval_us, max_wait_us. Returns {wait, wait until a slot, the
# slot's time} in microseconds of Redis's clock; the first is -1 when the slot is further away
# than max_wait (nothing reserved).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return {-1, wait, tat} end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((wait + interval) / 1000) + 1000)
return {wait, wait, tat}
"""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    wait: float  # seconds until the slot (granted) or until one might be free (refused)
    at: float = 0.0  # the slot's time on the limiter's clock (seconds)


class _LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def reserve(self, key: str, interval: float, max_wait: float) -> Reservation:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, now), now)
            wait = tat - now
            if wait > max_wait:
                return Reservation(False, wait, tat)
            self._tat[key] = tat + interval
            return Reservation(True, wait, tat)


_local = _LocalBuckets()


@functools.cache
def redis_script(source: str):
    """A Lua script on the shared Redis (REDIS_URL), registered once per process and source
    (a race registers it twice, harmlessly); calling it runs EVALSHA."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    return client.register_script(source)


def rate_for(channel: str) -> float:
    """Configured messages per second for a channel's sender (0: unlimited)."""
    return float(settings.SENDER_RATE_LIMITS.get(channel, 0) or 0)


def reserve_send_slot(*, channel: str, sender: str, max_wait: float | None = None) -> Reservation:
    """Reserve the sender's next send slot. Granted with `wait` seconds to sleep first, or
    refused (nothing reserved) when the slot is more than `max_wait` away."""
    rate = rate_for(channel)
    if rate <= 0:
        return Reservation(True, 0.0)
    interval = 1.0 / rate
    max_wait = settings.SENDER_RATE_MAX_WAIT_SECONDS if max_wait is None else max_wait
    key = f"touchline:rate:{channel}:{sender}"
    if not settings.REDIS_URL:
        return _local.reserve(key, interval, max_wait)
    wait_us, eta_us, at_us = redis_script(_GCRA)(
        keys=[key], args=[int(interval * 1e6), int(max_wait * 1e6)]
    )
    return Reservation(wait_us >= 0, eta_us / 1e6, at_us / 1e6)
