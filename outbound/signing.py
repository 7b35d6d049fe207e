"""Standard Webhooks signing (https://www.standardwebhooks.com/, symmetric `v1`).

The whole scheme is a few lines of the standard library, so it is written here rather than
pulled in as a dependency: sign `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256,
keyed by the base64-decoded secret (without its `whsec_` prefix), and send
`webhook-signature: v1,<base64 signature>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from .models import SECRET_PREFIX


def secret_key(secret: str) -> bytes:
    """The raw HMAC key a `whsec_…` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for exactly these body bytes."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body
        ),
    }
