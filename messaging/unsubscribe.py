"""RFC 8058 one-click unsubscribe: the signed token, its URLs, the List-Unsubscribe headers
and the footer link of marketing email.

The token is a `django.core.signing.Signer` object with its own salt (HMAC with SECRET_KEY):
it names the contact, the channel and the message, and cannot be forged or guessed. It never
expires: an unsubscribe link must work for as long as the email may be read (laws ask for 30 days at
least; mailbox providers keep showing the button for old mail). Rotating SECRET_KEY (keep the
old one in SECRET_KEY_FALLBACKS) is how old links would be retired.
"""

from __future__ import annotations

import html
import uuid
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from channels_app.channels import Channel

from . import policies

SALT = "touchline.unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class UnsubscribeTarget:
    contact_id: int
    channel: str
    message_id: uuid.UUID


def needs_unsubscribe(*, channel: str, category: str) -> bool:
    """Marketing email carries the headers and the footer; transactional email does not."""
    return channel == Channel.EMAIL and category == policies.Category.MARKETING


def unsubscribe_token(*, contact_id: int, channel: str, message_id: uuid.UUID | str) -> str:
    payload = {"c": int(contact_id), "ch": str(channel), "m": str(message_id)}
    # Signer, not signing.dumps: no timestamp, so one message's token is always the same.
    return signing.Signer(salt=SALT).sign_object(payload)


def read_token(token: str) -> UnsubscribeTarget | None:
    """The target of a genuine token; None for anything forged, damaged or malformed."""
    try:
        payload = signing.Signer(salt=SALT).unsign_object(token)
        return UnsubscribeTarget(
            contact_id=int(payload["c"]),
            channel=str(payload["ch"]),
            message_id=uuid.UUID(str(payload["m"])),
        )
    except (signing.BadSignature, ValueError, TypeError, KeyError, AttributeError, zlib.error):
        return None


def unsubscribe_url(*, contact_id: int, channel: str, message_id: uuid.UUID | str) -> str:
    token = unsubscribe_token(contact_id=contact_id, channel=channel, message_id=message_id)
    return f"{settings.PUBLIC_BASE_URL}/u/{token}"


def unsubscribe_headers(
    *, contact_id: int, channel: str, message_id: uuid.UUID | str
) -> tuple[tuple[str, str], ...]:
    """`List-Unsubscribe` (https, and mailto when UNSUBSCRIBE_MAILTO is set) and
    `List-Unsubscribe-Post` (RFC 8058)."""
    links = [f"<{unsubscribe_url(contact_id=contact_id, channel=channel, message_id=message_id)}>"]
    if settings.UNSUBSCRIBE_MAILTO:
        links.append(f"<mailto:{settings.UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    return (("List-Unsubscribe", ", ".join(links)), ("List-Unsubscribe-Post", ONE_CLICK))


def _shows(part: str, url: str) -> bool:
    return url in part or html.escape(url) in part


def with_footer(
    *, body: str, html_body: str, url: str, preferences_url: str = ""
) -> tuple[str, str]:
    """Add the footer (the unsubscribe link, and "Manage preferences" when `preferences_url`
    is given) to each part that does not show the unsubscribe link already: a template that
    placed `{{ unsubscribe_url }}` itself made its own footer and gets none (nor a second
    preferences link where it placed `{{ preferences_url }}`)."""
    links = [("Unsubscribe", url), ("Manage preferences", preferences_url)]
    if body and url not in body:
        lines = [f"{label}: {link}" for label, link in links if link and link not in body]
        if lines:
            body = body.rstrip() + "\n\n--\n" + "\n".join(lines) + "\n"
    if html_body and not _shows(html_body, url):
        anchors = [
            f'<a href="{html.escape(link)}">{label}</a>'
            for label, link in links
            if link and not _shows(html_body, link)
        ]
        if anchors:
            footer = f'<p style="font-size:12px">{" · ".join(anchors)}</p>'
            at = html_body.lower().rfind("</body>")
            html_body = (
                f"{html_body}{footer}" if at < 0 else f"{html_body[:at]}{footer}{html_body[at:]}"
            )
    return body, html_body
