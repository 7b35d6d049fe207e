"""Email through SendGrid's v3 Mail Send, with the official SDK."""

from __future__ import annotations

import http.client
import logging
import urllib.error

from django.conf import settings
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, CustomArg, Header, Mail, ReplyTo

from ..reply_token import reply_address
from .base import OutboundMessage, Provider, ProviderError, SendResult
from .retry import parse_ratelimit_reset, parse_retry_after

logger = logging.getLogger(__name__)

_PERMANENT_STATUSES = {400, 401, 403, 404, 413}


def message_id_header(message_id: str) -> str:
    """The RFC 5322 Message-ID we give each email, so In-Reply-To can be matched back."""
    return f"<{message_id}@{settings.INBOUND_EMAIL_DOMAIN}>"


class SendGridEmailProvider(Provider):
    """Email with text and HTML parts; our message id travels in custom_args."""

    name = "sendgrid"
    channel = "email"

    def __init__(self) -> None:
        self._client = SendGridAPIClient(settings.SENDGRID_API_KEY, host=settings.SENDGRID_API_HOST)
        self._client.client.timeout = settings.PROVIDER_TIMEOUT_SECONDS

    @property
    def sender(self) -> str:
        return settings.SENDGRID_FROM_EMAIL

    def send(self, message: OutboundMessage) -> SendResult:
        sender = (
            (settings.SENDGRID_FROM_EMAIL, settings.SENDGRID_FROM_NAME)
            if settings.SENDGRID_FROM_NAME
            else settings.SENDGRID_FROM_EMAIL
        )
        mail = Mail(
            from_email=sender,
            to_emails=message.to,
            subject=message.subject or "(no subject)",
            plain_text_content=message.body or None,
            html_content=message.html_body or None,
        )
        mail.reply_to = ReplyTo(reply_address(message.message_id))
        mail.add_custom_arg(CustomArg("touchline_message_id", str(message.message_id)))
        mail.add_header(Header("Message-ID", message_id_header(message.message_id)))
        for name, value in message.headers:
            mail.add_header(Header(name, value))
        for category in message.categories[:10]:
            mail.add_category(Category(category))
        try:
            response = self._client.send(mail)
        except HTTPError as exc:
            raise self._classify(exc) from exc
        except urllib.error.URLError as exc:
            # urllib wraps failures while connecting and sending: the request never completed.
            raise ProviderError(f"SendGrid unreachable: {exc}", code="network") from exc
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            # Raised while waiting for the answer: SendGrid may have accepted the mail.
            raise ProviderError(
                f"No answer from SendGrid: {exc}", code="network", ambiguous=True
            ) from exc
        headers = {k.lower(): v for k, v in dict(response.headers or {}).items()}
        return SendResult(
            provider_message_id=headers.get("x-message-id", ""),
            from_address=settings.SENDGRID_FROM_EMAIL,
            provider_status="queued",
        )

    def _classify(self, exc: HTTPError) -> ProviderError:
        status = int(exc.status_code or 0)
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
        text = f"SendGrid {status}: {body[:500]}"
        headers = {k.lower(): v for k, v in dict(exc.headers or {}).items()}
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"))
            if retry_after is None:
                retry_after = parse_ratelimit_reset(headers.get("x-ratelimit-reset"))
            return ProviderError(text, code="429", retry_after=retry_after, http_status=status)
        if status in _PERMANENT_STATUSES or 400 <= status < 500:
            return ProviderError(text, code=str(status), permanent=True, http_status=status)
        return ProviderError(text, code=str(status), http_status=status)
