"""Twilio SMS and WhatsApp through the official SDK (its base URL comes from settings)."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, timedelta
from typing import Any

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3 import exceptions as urllib3_exceptions

from .base import (
    LookupResult,
    OutboundMessage,
    Provider,
    ProviderError,
    SendResult,
    SentMessageQuery,
)
from .retry import parse_retry_after

logger = logging.getLogger(__name__)


class _ConnectRefused(Exception):
    pass


# Twilio error code → (permanent, flag). Unlisted 4xx codes are permanent; 429/5xx retry.
_PERMANENT_CODES: dict[int, str] = {
    21211: "invalid_address",  # invalid To
    21614: "invalid_address",  # not a mobile number
    21408: "",  # region not enabled: an operator must act
    21610: "unsubscribed",  # recipient replied STOP
    63016: "",  # outside the WhatsApp 24-hour window: needs a template or another channel
}
_RETRY_LATER_CODES: dict[int, float] = {21611: 300.0, 20429: 0.0}

# A message Twilio holds → our normalised status. Queued, accepted, scheduled and sending mean
# Twilio took it: for us that is `sent` (accepted by the provider).
LOOKUP_STATUSES: dict[str, str] = {
    "accepted": "sent",
    "queued": "sent",
    "scheduled": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "partially_delivered": "delivered",
    "read": "read",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
# Clocks differ between us and Twilio; a listed message this far outside the window of our
# request still counts as a candidate.
LOOKUP_CLOCK_SKEW = timedelta(minutes=2)
# At most 3 list requests per lookup (messages to one number since our send: a handful).
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_LISTED = 300


class _RecordingHttpClient(TwilioHttpClient):
    """Keeps the last response's headers per thread so a 429's Retry-After can be honoured."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        try:
            response = super().request(*args, **kwargs)
        except requests.ConnectionError as exc:
            if _is_connect_failure(exc):
                raise _ConnectRefused(str(exc)) from exc
            raise
        self._local.headers = dict(response.headers or {})
        return response

    @property
    def last_headers(self) -> dict[str, str]:
        return getattr(self._local, "headers", {})


class _TwilioProvider(Provider):
    name = "twilio"

    def __init__(self) -> None:
        self._local = threading.local()

    def _client(self) -> Client:
        # One client per thread: requests sessions are not documented as thread-safe.
        client = getattr(self._local, "client", None)
        if client is None:
            http_client = _RecordingHttpClient(timeout=settings.PROVIDER_TIMEOUT_SECONDS)
            client = Client(
                settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http_client
            )
            client.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
            self._local.client = client
        return client

    def _address(self, number: str) -> str:
        return number

    def _sender_kwargs(self) -> dict[str, str]:
        raise NotImplementedError

    def send(self, message: OutboundMessage) -> SendResult:
        kwargs: dict[str, Any] = {
            "to": self._address(message.to),
            "status_callback": status_callback_url(message.message_id),
            **self._sender_kwargs(),
        }
        if message.content_sid:
            # With an approved template Twilio takes ContentSid + ContentVariables, no Body.
            kwargs["content_sid"] = message.content_sid
            kwargs["content_variables"] = json.dumps(message.content_variables)
        else:
            kwargs["body"] = message.body
        if message.media_urls:
            kwargs["media_url"] = list(message.media_urls)
        client = self._client()
        try:
            created = client.messages.create(**kwargs)
        except TwilioException as exc:
            raise self._classify(exc, client.http_client.last_headers) from exc
        except (requests.ConnectTimeout, _ConnectRefused) as exc:
            # The request never reached Twilio: safe to retry.
            raise ProviderError(f"Twilio unreachable: {exc}", code="network") from exc
        except requests.RequestException as exc:
            # The request may have reached Twilio (read timeout, connection dropped).
            raise ProviderError(
                f"No answer from Twilio: {exc}", code="network", ambiguous=True
            ) from exc
        return SendResult(
            provider_message_id=created.sid,
            from_address=str(created.from_ or kwargs.get("from_", "")),
            provider_status=str(created.status or ""),
        )

    def lookup(
        self, query: SentMessageQuery, *, exclude: frozenset[str] = frozenset()
    ) -> LookupResult:
        """Fetch by SID when we have it; otherwise list what Twilio sent to that number since
        the request and match sender, body and time (the listing does not return the status
        callback URL that carries our id)."""
        client = self._client()
        try:
            if query.provider_message_id:
                return self._fetch(client, query.provider_message_id)
            return self._search(client, query, exclude)
        except TwilioException as exc:
            raise self._classify(exc, client.http_client.last_headers) from exc
        except (requests.RequestException, _ConnectRefused) as exc:
            raise ProviderError(f"Twilio unreachable: {exc}", code="network") from exc

    def _fetch(self, client: Client, sid: str) -> LookupResult:
        try:
            found = client.messages(sid).fetch()
        except TwilioException as exc:
            if int(getattr(exc, "status", 0) or 0) == 404:
                return LookupResult(found=False, provider_message_id=sid, matched_by="sid")
            raise
        return _result(found, "sid")

    def _search(
        self, client: Client, query: SentMessageQuery, exclude: frozenset[str]
    ) -> LookupResult:
        sender = self._sender_kwargs().get("from_")
        after = query.sent_after.astimezone(UTC) - LOOKUP_CLOCK_SKEW
        before = query.sent_before.astimezone(UTC) + LOOKUP_CLOCK_SKEW
        kwargs: dict[str, Any] = {
            "to": self._address(query.to),
            # Naive UTC: the SDK formats it with strftime, ignoring any zone.
            "date_sent_after": after.replace(tzinfo=None),
            "page_size": LOOKUP_PAGE_SIZE,
            "limit": LOOKUP_MAX_LISTED,
        }
        if sender:
            kwargs["from_"] = sender  # a Messaging Service picks the number: any will do
        matches = []
        for listed in client.messages.stream(**kwargs):
            created = listed.date_created
            if (
                str(listed.direction or "").startswith("outbound")
                and listed.sid not in exclude
                and (not query.body or (listed.body or "") == query.body)
                and (created is None or after <= created <= before)
            ):
                matches.append(listed)
        if not matches:
            return LookupResult(found=False, matched_by="listing")
        # Newest first: the oldest match is the one closest to our request.
        return _result(matches[-1], "listing", candidates=len(matches))

    def _classify(self, exc: TwilioException, headers: dict[str, str]) -> ProviderError:
        status = int(getattr(exc, "status", 0) or 0)
        code = int(getattr(exc, "code", 0) or 0)
        text = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or exc.__class__.__name__)
        if code in _PERMANENT_CODES:
            flag = _PERMANENT_CODES[code]
            return ProviderError(
                text,
                code=str(code),
                permanent=True,
                unsubscribed=flag == "unsubscribed",
                invalid_address=flag == "invalid_address",
                http_status=status,
            )
        if status == 429 or code in _RETRY_LATER_CODES:
            retry_after = parse_retry_after(
                headers.get("Retry-After") or headers.get("retry-after")
            )
            if retry_after is None and _RETRY_LATER_CODES.get(code):
                retry_after = _RETRY_LATER_CODES[code]
            return ProviderError(
                text, code=str(code or status), retry_after=retry_after, http_status=status
            )
        if status >= 500 or status == 0:
            return ProviderError(text, code=str(code or status), http_status=status)
        return ProviderError(text, code=str(code or status), permanent=True, http_status=status)


class TwilioSmsProvider(_TwilioProvider):
    """SMS through Twilio Programmable Messaging."""

    channel = "sms"

    @property
    def sender(self) -> str:
        return settings.TWILIO_MESSAGING_SERVICE_SID or settings.TWILIO_SMS_FROM

    def _sender_kwargs(self) -> dict[str, str]:
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            return {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
        return {"from_": settings.TWILIO_SMS_FROM}


class TwilioWhatsAppProvider(_TwilioProvider):
    """WhatsApp through Twilio: freeform body, or an approved template by ContentSid."""

    channel = "whatsapp"

    def _address(self, number: str) -> str:
        return number if number.startswith("whatsapp:") else f"whatsapp:{number}"

    @property
    def sender(self) -> str:
        return settings.TWILIO_WHATSAPP_FROM

    def _sender_kwargs(self) -> dict[str, str]:
        return {"from_": self._address(settings.TWILIO_WHATSAPP_FROM)}


def _result(listed: Any, matched_by: str, candidates: int = 1) -> LookupResult:
    provider_status = str(listed.status or "")
    return LookupResult(
        found=True,
        provider_message_id=listed.sid,
        # A status we don't know still means Twilio holds the message: at least `sent`.
        status=LOOKUP_STATUSES.get(provider_status, "sent"),
        provider_status=provider_status,
        error_code=str(listed.error_code or ""),
        matched_by=matched_by,
        candidates=candidates,
        raw={
            "sid": listed.sid,
            "status": provider_status,
            "error_code": listed.error_code,
            "date_created": listed.date_created.isoformat() if listed.date_created else None,
        },
    )


def _is_connect_failure(exc: BaseException) -> bool:
    """True when the TCP connection was never made, so the request never left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (urllib3_exceptions.NewConnectionError, ConnectionRefusedError)):
            return True
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException) and reason is not seen:
            seen = reason
            continue
        seen = seen.__cause__ or seen.__context__
    return False


def status_callback_url(message_id: str) -> str:
    """Where Twilio posts status changes; our message id rides along to reconcile crashes."""
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/status/?mid={message_id}"
