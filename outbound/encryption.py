"""Subscription signing secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`) under a MultiFernet, so keys rotate without downtime.

Keys come from `OUTBOUND_SECRET_KEYS` (comma-separated Fernet keys, each
`Fernet.generate_key()`): the first encrypts, every one decrypts. When it is empty, one key
is derived from Django's SECRET_KEY: HKDF-SHA256 (RFC 5869, no salt,
info=b"touchline outbound webhook secrets v1", 32 bytes), url-safe base64 encoded.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import conf

DERIVATION_INFO = b"touchline outbound webhook secrets v1"

__all__ = ["InvalidToken", "decrypt", "derived_key", "encrypt", "rotate"]


def derived_key(secret_key: str) -> str:
    """The Fernet key used when OUTBOUND_SECRET_KEYS is empty."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DERIVATION_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(raw).decode()


@functools.cache
def _box(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip()))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"OUTBOUND_SECRET_KEYS: key #{position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes, e.g. from Fernet.generate_key())"
            ) from exc
    return MultiFernet(fernets)


def box() -> MultiFernet:
    keys = tuple(k for k in conf.get("OUTBOUND_SECRET_KEYS") if k.strip())
    return _box(keys or (derived_key(settings.SECRET_KEY),))


def encrypt(plaintext: str) -> str:
    return box().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Raises InvalidToken when no configured key opens it."""
    return box().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """The same secret, encrypted with the current first key."""
    return box().rotate(token.encode()).decode()
