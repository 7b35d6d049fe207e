"""Tracked links: http(s) URLs in outbound bodies become `PUBLIC_BASE_URL/l/<token>`.

`links_rewrite` runs in `message_create` after rendering and before the message is stored, so
the stored body is what was sent. Each link is a `TrackedLink` row; its token is the row id in
base62 followed by 8 base62 characters of an HMAC-SHA256 of the id (key derived from
SECRET_KEY), so tokens are short (≤ 16 characters) and cannot be forged or enumerated.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser

from django.conf import settings

logger = logging.getLogger(__name__)

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SIG_LEN = 8
_MAX_TOKEN = 16
_TOKEN_RE = re.compile(f"[0-9A-Za-z]{{{_SIG_LEN + 1},{_MAX_TOKEN}}}")
_URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\""
_HREF_RE = re.compile(r"""(\bhref\s*=\s*)("[^"]*"|'[^']*'|[^\s>"']+)""", re.IGNORECASE)


def _b62(number: int, width: int = 0) -> str:
    out = ""
    while number:
        number, rem = divmod(number, 62)
        out = _ALPHABET[rem] + out
    return out.rjust(width, "0") or "0"


@functools.lru_cache(maxsize=4)
def _token_key(secret: str) -> bytes:
    return hashlib.sha256(b"touchline-link-token:" + secret.encode()).digest()


def _signature(link_id: int) -> str:
    key = _token_key(settings.SECRET_KEY)
    digest = hmac.new(key, str(link_id).encode(), hashlib.sha256).digest()
    return _b62(int.from_bytes(digest[:8], "big") % 62**_SIG_LEN, _SIG_LEN)


def link_token(link_id: int) -> str:
    return _b62(link_id) + _signature(link_id)


def link_id_from_token(token: str) -> int | None:
    """The link id a token names, or None when it is malformed or its signature is wrong."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    raw_id, sig = token[:-_SIG_LEN], token[-_SIG_LEN:]
    link_id = 0
    for char in raw_id:
        link_id = link_id * 62 + _ALPHABET.index(char)
    if not hmac.compare_digest(sig, _signature(link_id)):
        return None
    return link_id


def _trim(url: str) -> str:
    """Drop sentence punctuation and an unbalanced closing parenthesis after a URL."""
    while url and (url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def _trackable(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and not url.startswith(
        settings.PUBLIC_BASE_URL + "/"
    )


def _rewrite_text(text: str, replace: Callable[[str], str]) -> str:
    def sub(match: re.Match[str]) -> str:
        raw = match.group(0)
        url = _trim(raw)
        if not url or not _trackable(url):
            return raw
        return replace(url) + raw[len(url) :]

    return _URL_RE.sub(sub, text)


class _StartTags(HTMLParser):
    """Collects (offset, raw text) of every start tag that has an href attribute."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        # HTMLParser counts lines by "\n" only (not str.splitlines' other separators).
        self.lines = [0]
        for line in html.split("\n"):
            self.lines.append(self.lines[-1] + len(line) + 1)
        self.tags: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        if any(name == "href" for name, _ in attrs):
            line, col = self.getpos()
            self.tags.append((self.lines[line - 1] + col, self.get_starttag_text() or ""))

    handle_startendtag = handle_starttag


def _rewrite_html(html: str, replace: Callable[[str], str]) -> str:
    """Rewrite href attribute values only; every other character of the HTML is kept."""
    parser = _StartTags(html)
    parser.feed(html)
    parser.close()
    out, cursor = [], 0
    for offset, raw in parser.tags:
        if not raw or html[offset : offset + len(raw)] != raw or offset < cursor:
            continue

        def sub(match: re.Match[str]) -> str:
            value = match.group(2)
            quoted = value[:1] in "\"'"
            url = unescape(value[1:-1] if quoted else value).strip()
            if not _trackable(url):
                return match.group(0)
            return f'{match.group(1)}"{replace(url)}"'

        out.append(html[cursor:offset])
        out.append(_HREF_RE.sub(sub, raw, count=1))
        cursor = offset + len(raw)
    out.append(html[cursor:])
    return "".join(out)


def links_rewrite(*, message_id, body: str, html_body: str) -> tuple[str, str, list]:
    """(body, html_body, unsaved TrackedLink rows): every trackable URL replaced by a short
    link. The rows get their ids (and so their tokens) from one bulk insert; the caller runs
    this inside the message's transaction (the foreign key is checked at commit)."""
    from .models import TrackedLink

    found: list[str] = []

    def collect(url: str) -> str:
        found.append(url)
        return url

    if body:
        _rewrite_text(body, collect)
    if html_body:
        _rewrite_html(html_body, collect)
    if not found:
        return body, html_body, []
    rows = TrackedLink.objects.bulk_create(
        [TrackedLink(message_id=message_id, url=url, position=i) for i, url in enumerate(found)]
    )
    # The same walk again, in the same order, puts each row's short link in place.
    short = iter(f"{settings.PUBLIC_BASE_URL}/l/{link_token(row.pk)}" for row in rows)

    def put(url: str) -> str:
        return next(short)

    body = _rewrite_text(body, put) if body else body
    html_body = _rewrite_html(html_body, put) if html_body else html_body
    return body, html_body, rows


# Link previews and mail-security scanners open links without a person: recorded, not counted.
BOT_AGENTS = (
    "slackbot",
    "facebookexternalhit",
    "whatsapp",
    "twitterbot",
    "googlebot",
    "bingbot",
    "bingpreview",
    "linkedinbot",
    "skypeuripreview",
    "microsoft preview",
    "microsoft office",
    "outlook",
    "safelinks",
    "proofpoint",
    "mimecast",
    "barracuda",
    "telegrambot",
    "discordbot",
    "applebot",
)


def _utm_target(url: str, *, channel: str, campaign: str, content: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    extra = {"utm_source": "touchline", "utm_medium": channel}
    if campaign:
        extra["utm_campaign"] = campaign
    if content:
        extra["utm_content"] = content
    query += [(k, v) for k, v in extra.items() if k not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


CLICK_FIELDS = (
    "url",
    "message",
    "message__contact_id",
    "message__channel",
    "message__sent_at",
    "message__delivered_at",
    "message__metadata",
    "message__template",
    "message__template__slug",
)


def click_reason(*, method: str, user_agent: str) -> str:
    """Why a click is not a person's, as far as the request tells: "head", "user_agent" or
    "" (the delivery-time check needs the message: `click_touchpoint`)."""
    if method == "HEAD":
        return "head"
    agent = user_agent.lower()
    if any(bot in agent for bot in BOT_AGENTS):
        return "user_agent"
    return ""


def link_destination(*, url: str, channel: str, metadata, template_slug: str) -> str:
    """Where a link's click goes: its URL with the message's UTM parameters added."""
    meta = metadata if isinstance(metadata, dict) else {}
    campaign = str(meta.get("broadcast") or meta.get("journey") or template_slug or "")
    content = str(meta.get("step") or "") if meta.get("journey") else ""
    return _utm_target(url, channel=channel, campaign=campaign, content=content)


def click_link_read(link_id: int):
    """The link with only the message columns a click needs (never its bodies); None when
    unknown or erased with its contact. One indexed read."""
    from .models import TrackedLink

    link = (
        TrackedLink.objects.select_related("message", "message__template")
        .only(*CLICK_FIELDS)
        .filter(pk=link_id)
        .first()
    )
    if link is None or not link.url:
        return None
    return link


def click_link_destination(link) -> str:
    message = link.message
    template = message.template.slug if message.template_id and message.template else ""
    return link_destination(
        url=link.url, channel=message.channel, metadata=message.metadata, template_slug=template
    )


def click_touchpoint(
    *,
    link_id: int,
    url: str,
    message_id,
    contact_id: int,
    channel: str,
    sent_at,
    delivered_at,
    at,
    reason: str,
):
    """The unsaved touchpoint of one click at `at`. A person's click is `clicked` (what
    segments and reports count), once per link per minute; a HEAD, a known preview/scanner
    user agent or a click within LINK_BOT_SECONDS of the message being sent or delivered is
    `clicked_bot` with data `bot: true`."""
    import datetime as dt

    from .models import Direction, Touchpoint, TouchpointKind

    if not reason:
        window = dt.timedelta(seconds=settings.LINK_BOT_SECONDS)
        if any(t is not None and abs(at - t) < window for t in (sent_at, delivered_at)):
            reason = "too_soon"
    data = {"link": link_id, "url": url}
    kind = TouchpointKind.CLICKED
    if reason:
        kind, data = TouchpointKind.CLICKED_BOT, {**data, "bot": True, "reason": reason}
    return Touchpoint(
        contact_id=contact_id,
        kind=kind,
        direction=Direction.INBOUND,
        channel=channel,
        message_id=message_id,
        occurred_at=at,
        data=data,
        # Repeated clicks on the same link in the same minute are one click.
        dedupe_key=f"{kind}:{link_id}:{int(at.timestamp() // 60)}",
    )


def link_click(*, token: str, method: str, user_agent: str) -> str | None:
    """Record a click on a tracked link and return the URL to redirect to, or None for an
    unknown or forged token (refused before any I/O). With REDIS_URL: one Redis round trip
    on a cached link, the touchpoint written by the next flush (messaging/click_buffer.py);
    without (or if Redis fails): one indexed read and one insert, now."""
    from django.utils import timezone

    from .services.touchpoints import touchpoints_write

    link_id = link_id_from_token(token)
    if link_id is None:
        return None
    reason = click_reason(method=method, user_agent=user_agent)
    if settings.REDIS_URL:
        from . import click_buffer

        try:
            return click_buffer.click_buffered(link_id=link_id, reason=reason)
        except click_buffer.RedisError:
            # Redis is down: the click is still counted, synchronously, as without Redis.
            logger.warning("Click buffer unavailable; recording the click directly", exc_info=True)
    link = click_link_read(link_id)
    if link is None:
        return None
    message = link.message
    touchpoints_write(
        [
            click_touchpoint(
                link_id=link.pk,
                url=link.url,
                message_id=message.pk,
                contact_id=message.contact_id,
                channel=message.channel,
                sent_at=message.sent_at,
                delivered_at=message.delivered_at,
                at=timezone.now(),
                reason=reason,
            )
        ]
    )
    return click_link_destination(link)
