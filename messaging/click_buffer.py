"""Tracked-link clicks through Redis (REDIS_URL set): the redirect does no database I/O.

- Destinations: `touchline:link:<id>` holds the URL a link redirects to, UTM included
  (written when the message commits, or by the first click's database read; "" for a link
  that does not exist or was erased), for LINK_CACHE_SECONDS.
- The click: one EVALSHA reads the destination and, when there is one, appends
  "<link id>,<epoch ms>,<reason>" to the `touchline:clicks` list: one round trip.
- The flush (beat, every CLICK_FLUSH_SECONDS): moves a batch atomically to
  `touchline:clicks:processing`, writes it (one read of the batch's links and messages, the
  delivery-time bot check, one INSERT … ON CONFLICT DO NOTHING of the touchpoints, whose
  per-link-per-minute dedupe keys make a re-run write nothing), then deletes the processing
  list. A worker that dies in between leaves the list for the next flush: nothing is lost and
  nothing is counted twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from redis import Redis
from redis.exceptions import RedisError

__all__ = ["RedisError", "click_buffered", "clicks_flush", "links_cache"]

logger = logging.getLogger(__name__)

LINK_KEY = "touchline:link:"
PENDING = "touchline:clicks"
PROCESSING = "touchline:clicks:processing"
LOCK = "touchline:clicks:lock"
LOCK_SECONDS = 120
# A well-signed id with no link (erased, or a forger with the key) is remembered this long.
MISSING_SECONDS = 300

_CLICK = """
local target = redis.call('GET', KEYS[1])
if target and target ~= '' then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return target
"""
# Atomic: a batch leaves the pending list only by landing in the processing list.
_TAKE = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
  end
end
return items
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@functools.cache
def _client(url: str) -> Redis:
    # Short timeouts: a hung Redis must not hold redirects (they fall back to the database).
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@functools.cache
def _script(url: str, source: str):
    return _client(url).register_script(source)


def _now_ms() -> int:
    from django.utils import timezone

    return int(timezone.now().timestamp() * 1000)


def click_buffered(*, link_id: int, reason: str) -> str | None:
    """The destination of a click, the click buffered for the flush; None for no such link.
    One Redis round trip when the link is cached; else one database read, then one more."""
    from .links import click_link_destination, click_link_read

    url = settings.REDIS_URL
    record = f"{link_id},{_now_ms()},{reason}"
    cached = _script(url, _CLICK)(keys=[f"{LINK_KEY}{link_id}", PENDING], args=[record])
    if cached is not None:
        return cached.decode() or None
    link = click_link_read(link_id)
    target = click_link_destination(link) if link is not None else ""
    pipe = _client(url).pipeline(transaction=False)
    pipe.set(
        f"{LINK_KEY}{link_id}",
        target,
        ex=settings.LINK_CACHE_SECONDS if target else MISSING_SECONDS,
    )
    if target:
        pipe.rpush(PENDING, record)
    pipe.execute()
    return target or None


def links_cache(destinations: dict[int, str]) -> None:
    """Cache link destinations ("" forgets one: a 404), if Redis is configured; a Redis error
    is logged and costs only a database read on the link's first click."""
    if not settings.REDIS_URL or not destinations:
        return
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=False)
        for link_id, target in destinations.items():
            ttl = settings.LINK_CACHE_SECONDS if target else MISSING_SECONDS
            pipe.set(f"{LINK_KEY}{link_id}", target, ex=ttl)
        pipe.execute()
    except RedisError:
        logger.warning("Could not cache %d link destinations", len(destinations), exc_info=True)


def links_cache_on_commit(destinations: dict[int, str]) -> None:
    """`links_cache` once the caller's transaction commits (a rolled-back send caches
    nothing)."""
    if settings.REDIS_URL and destinations:
        transaction.on_commit(lambda: links_cache(destinations))


# --- The flush ------------------------------------------------------------------------------


def _parse(items: Iterable[bytes]) -> list[tuple[int, int, str]]:
    out = []
    for item in items:
        try:
            link_id, ms, reason = item.decode().split(",", 2)
            out.append((int(link_id), int(ms), reason))
        except (ValueError, UnicodeDecodeError):
            logger.warning("Dropped a malformed buffered click: %r", item[:100])
    return out


def _write(items: list[bytes]) -> int:
    """Write one batch of buffered clicks; the number of touchpoints offered (those already
    written by an earlier run of the same batch are skipped by their dedupe keys). Two
    statements whatever the batch's size, plus the segment marks of the clicking contacts."""
    from .links import click_touchpoint
    from .models import TouchpointKind, TrackedLink
    from .services.contacts import contacts_changed_announce
    from .services.touchpoints import touchpoints_write

    clicks = sorted(_parse(items), key=lambda click: click[1])
    if not clicks:
        return 0
    links = {
        row[0]: row
        for row in TrackedLink.objects.filter(pk__in={link_id for link_id, _, _ in clicks})
        .exclude(url="")  # erased with its contact since: the click is forgotten too
        .values_list(
            "pk",
            "url",
            "message_id",
            "message__contact_id",
            "message__channel",
            "message__sent_at",
            "message__delivered_at",
        )
    }
    rows: dict[str, object] = {}
    for link_id, ms, reason in clicks:
        link = links.get(link_id)
        if link is None:
            continue
        _, url, message_id, contact_id, channel, sent_at, delivered_at = link
        row = click_touchpoint(
            link_id=link_id,
            url=url,
            message_id=message_id,
            contact_id=contact_id,
            channel=channel,
            sent_at=sent_at,
            delivered_at=delivered_at,
            at=dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC),
            reason=reason,
        )
        rows.setdefault(row.dedupe_key, row)  # the minute's first click, as the direct path
    people = sorted({r.contact_id for r in rows.values() if r.kind == TouchpointKind.CLICKED})
    with transaction.atomic():
        touchpoints_write(list(rows.values()))
        # Engagement segments ("clicked …") see the clicks without waiting for the recompute.
        contacts_changed_announce(people)
    return len(rows)


def clicks_flush(*, batch: int | None = None, max_batches: int = 100) -> dict[str, int]:
    """Beat: write the buffered clicks as touchpoints, batch by batch, one flush at a time
    (a Redis lock). A batch a crashed flush left in the processing list goes first."""
    if not settings.REDIS_URL:
        return {"clicks": 0}
    batch = batch or settings.CLICK_FLUSH_BATCH
    client = _client(settings.REDIS_URL)
    me = uuid.uuid4().hex
    if not client.set(LOCK, me, nx=True, ex=LOCK_SECONDS):
        return {"clicks": 0, "busy": 1}
    written = 0
    try:
        leftover = client.lrange(PROCESSING, 0, -1)
        if leftover:
            written += _write(leftover)
            client.delete(PROCESSING)
        take = _script(settings.REDIS_URL, _TAKE)
        for _ in range(max_batches):
            items = take(keys=[PENDING, PROCESSING], args=[batch])
            if not items:
                break
            written += _write(items)
            client.delete(PROCESSING)
    finally:
        _script(settings.REDIS_URL, _UNLOCK)(keys=[LOCK], args=[me])
    return {"clicks": written}


def clicks_buffer_forget(url: str | None = None) -> None:
    """Drop every buffered click and cached destination (tests; an operator after restoring
    the database to an earlier point, when link ids may be handed out again)."""
    url = settings.REDIS_URL if url is None else url
    if not url:
        return
    client = _client(url)
    client.delete(PENDING, PROCESSING, LOCK)
    keys = list(client.scan_iter(match=f"{LINK_KEY}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
