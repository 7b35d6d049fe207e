"""The one small interface every provider adapter implements.

Adapters know nothing of Touchline's models: they get an `OutboundMessage` and return a
`SendResult` or raise `ProviderError`, whose flags tell the caller what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str
    channel: str
    to: str
    body: str = ""
    subject: str = ""
    html_body: str = ""
    content_sid: str = ""
    content_variables: dict[str, str] = field(default_factory=dict)
    media_urls: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Extra email headers (name, value), e.g. List-Unsubscribe; ignored by SMS/WhatsApp.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    from_address: str = ""
    provider_status: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SentMessageQuery:
    """What we know of a send whose outcome we never learned, to find it at the provider: the
    request left between `sent_after` and `sent_before`. `body` is what was sent, or "" when
    we cannot know (a template the provider rendered)."""

    message_id: str
    channel: str
    to: str
    body: str
    sent_after: datetime
    sent_before: datetime
    provider_message_id: str = ""


@dataclass(frozen=True)
class LookupResult:
    """The provider's answer about one message. `found` False: the provider has no such
    message; when found, `status` is a normalised event type (sent, delivered, read, failed,
    undelivered), never empty."""

    found: bool
    provider_message_id: str = ""
    status: str = ""
    provider_status: str = ""
    error_code: str = ""
    matched_by: str = ""  # "sid" (fetched by its id) or "listing" (found in a list by content)
    candidates: int = 0  # listing: how many provider messages matched
    raw: dict[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """A failed send. `permanent` errors must not be retried."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
        unsubscribed: bool = False,
        invalid_address: bool = False,
        http_status: int | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = str(code or "")
        self.permanent = permanent
        self.retry_after = retry_after
        self.unsubscribed = unsubscribed
        self.invalid_address = invalid_address
        self.http_status = http_status
        # The request may have reached the provider (e.g. a read timeout): never resend it
        # blindly; wait for a status callback instead.
        self.ambiguous = ambiguous

    def __repr__(self) -> str:
        kind = "permanent" if self.permanent else "retryable"
        return f"ProviderError({self.code or self.http_status}, {kind}: {self.message!r})"


class Provider:
    """Base class: subclasses set `name` and `channel` and implement `send`."""

    name: ClassVar[str] = ""
    channel: ClassVar[str] = ""

    @property
    def sender(self) -> str:
        """The sending identity providers rate-limit (a number, a service, an address)."""
        return self.name

    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def lookup(
        self, query: SentMessageQuery, *, exclude: frozenset[str] = frozenset()
    ) -> LookupResult | None:
        """Ask the provider about a send whose outcome is unknown; None when its API cannot
        answer (the caller then waits for webhooks). Provider ids in `exclude` belong to other
        messages and never match. Raises ProviderError when the question itself failed."""
        return None
