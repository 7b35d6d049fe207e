"""Signed reply addresses: `reply+<token>@INBOUND_EMAIL_DOMAIN` identifies the message answered.

The token is the message UUID in hex plus a truncated HMAC, lowercase hex only, because mail
systems may lowercase or mangle the local part of an address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from django.conf import settings

_TOKEN_RE = re.compile(r"reply\+([0-9a-f]{32})([0-9a-f]{20})@", re.IGNORECASE)


def _mac(message_hex: str) -> str:
    key = f"touchline.reply-token:{settings.SECRET_KEY}".encode()
    return hmac.new(key, message_hex.encode(), hashlib.sha256).hexdigest()[:20]


def reply_address(message_id: str | uuid.UUID) -> str:
    """The Reply-To address for an outbound email."""
    message_hex = uuid.UUID(str(message_id)).hex
    return f"reply+{message_hex}{_mac(message_hex)}@{settings.INBOUND_EMAIL_DOMAIN}"


def message_id_from_address(address: str) -> uuid.UUID | None:
    """The message id in a reply address, or None when absent or its signature is wrong."""
    match = _TOKEN_RE.search(address or "")
    if not match:
        return None
    message_hex, mac = match.group(1).lower(), match.group(2).lower()
    if not hmac.compare_digest(mac, _mac(message_hex)):
        return None
    return uuid.UUID(message_hex)
