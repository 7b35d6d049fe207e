"""One flow for every provider webhook (as django-anymail does).

check_configured → verify → parse → record (dedupe) → publish → respond. Nothing is stored
or published before verification succeeds. Refusals answer JSON `{"detail": ...}` with a
4xx (or 503 when the secret needed to verify is not configured) and one warning log line.
Recording and publishing share one transaction: if a receiver raises, nothing is kept and
the view answers 500 so the provider retries.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..events import InboundEvent, TrackingEvent, inbound_received, tracking_received
from ..models import WebhookEvent

logger = logging.getLogger("channels_app.webhooks")

_EVENT_ID_MAX = WebhookEvent._meta.get_field("event_id").max_length or 255
_LOOKUP_CHUNK = 500  # stays under SQLite's bound-parameter limit


class WebhookError(Exception):
    """A refusal, answered as JSON `{"detail": ...}` with `status`."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> HttpResponse:
        return json_error(self.status, self.detail, self.headers)


@dataclass(frozen=True)
class Received:
    """One verified callback item: the row WebhookEvent records and the event to publish.

    `event` is None for items kept for the record only (e.g. Twilio's "sending" status).
    """

    event_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    event: TrackingEvent | InboundEvent | None = None


def json_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JsonResponse:
    """A JSON error answer in the shape the API uses: `{"detail": "..."}`."""
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def clean_text(value: str) -> str:
    """`value` without what PostgreSQL text/JSONB cannot hold: NUL bytes, lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def cap_chars(value: str, limit: int) -> tuple[str, int | None]:
    """`value` cut to `limit` characters, and its length when it was cut (else None)."""
    if len(value) <= limit:
        return value, None
    return value[:limit], len(value)


def cap_utf8(value: str, limit: int) -> tuple[str, int | None]:
    """`value` cut to at most `limit` UTF-8 bytes (never mid-character), and its size in
    bytes when it was cut (else None)."""
    if len(value) * 4 <= limit:
        return value, None  # cannot be over: skip encoding the common small body
    encoded = value.encode("utf-8")
    if len(encoded) <= limit:
        return value, None
    return encoded[:limit].decode("utf-8", "ignore"), len(encoded)


def clean_json(value: Any) -> Any:
    """`clean_text` applied to every string (keys included) of a decoded JSON value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def header_content_type(request: HttpRequest) -> str:
    """The request's media type, lowercased, without parameters."""
    return (request.content_type or "").strip().lower()


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """Base webhook view: POST only, no session or CSRF; subclasses verify, parse, respond."""

    provider: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    http_method_names = ["post"]

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return json_error(
            405, f"Method {request.method} is not allowed; use POST.", {"Allow": "POST"}
        )

    # --- steps subclasses provide -----------------------------------------------------

    def check_configured(self) -> None:
        """Raise WebhookError(503) when the secret needed to verify requests is missing."""

    def verify(self, request: HttpRequest) -> None:
        """Raise WebhookError(401/403) unless the request provably comes from the provider."""
        raise NotImplementedError

    def parse(self, request: HttpRequest) -> list[Received]:
        """The verified request as items to record and events to publish; 4xx if malformed."""
        raise NotImplementedError

    def respond(
        self, request: HttpRequest, received: list[Received], fresh: list[Received]
    ) -> HttpResponse:
        """The 2xx answer; `fresh` are the items seen for the first time."""
        return JsonResponse({"ok": True, "received": len(received), "new": len(fresh)})

    # --- the flow ---------------------------------------------------------------------

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            self.check_configured()
            self.verify(request)
            received = self.parse(request)
        except WebhookError as exc:
            return self._refuse(request, exc)
        except RequestDataTooBig:
            return self._refuse(request, WebhookError(413, "The request body is too large."))
        except (SuspiciousOperation, MultiPartParserError, UnreadablePostError, RecursionError):
            # Too many fields, a broken form body, a client that hung up, absurd nesting.
            return self._refuse(request, WebhookError(400, "The request body could not be read."))
        try:
            with transaction.atomic():
                fresh = self.record(received)
                self.publish([item.event for item in fresh if item.event is not None])
        except Exception:
            logger.exception(
                "%s %s webhook: failed to record or apply %d item(s); answering 500 so the "
                "provider retries",
                self.provider,
                self.kind,
                len(received),
            )
            return json_error(500, "Internal error while applying the events; retry later.")
        return self.respond(request, received, fresh)

    def record(self, received: list[Received]) -> list[Received]:
        """Store each item once; return the ones not seen before (in order)."""
        ids = [self._stored_id(item.event_id) for item in received]
        known: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            known.update(
                WebhookEvent.objects.filter(
                    provider=self.provider, event_id__in=ids[start : start + _LOOKUP_CHUNK]
                ).values_list("event_id", flat=True)
            )
        fresh: list[Received] = []
        for item, event_id in zip(received, ids, strict=True):
            if event_id in known:
                logger.info("%s webhook: duplicate %s ignored", self.provider, event_id)
                continue
            known.add(event_id)  # the same id twice in one batch
            try:
                # A savepoint per row: the insert is the dedupe gate, also against a
                # concurrent delivery of the same callback committing first.
                with transaction.atomic():
                    WebhookEvent.objects.create(
                        provider=self.provider,
                        kind=self.kind,
                        event_id=event_id,
                        payload=item.payload,
                    )
            except IntegrityError:
                logger.info(
                    "%s webhook: duplicate %s ignored (a concurrent delivery won)",
                    self.provider,
                    event_id,
                )
                continue
            fresh.append(item)
        return fresh

    def publish(self, events: list[TrackingEvent | InboundEvent]) -> None:
        """Hand new events to the subscribers (messaging), inside the recording transaction."""
        tracking = [event for event in events if isinstance(event, TrackingEvent)]
        if tracking:
            tracking_received.send(sender=type(self), events=tracking)
        for event in events:
            if isinstance(event, InboundEvent):
                inbound_received.send(sender=type(self), event=event)

    def _stored_id(self, event_id: str) -> str:
        if len(event_id) <= _EVENT_ID_MAX:
            return event_id
        return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "replace")).hexdigest()

    def _refuse(self, request: HttpRequest, exc: WebhookError) -> HttpResponse:
        logger.warning(
            "%s %s webhook refused (%d) from %s: %s",
            self.provider,
            self.kind,
            exc.status,
            request.META.get("REMOTE_ADDR", "?"),
            exc.detail,
        )
        return exc.response()
