"""The preference center's signed link: `PUBLIC_BASE_URL/preferences/<token>`.

Like the unsubscribe token (messaging/unsubscribe.py) it is an HMAC with SECRET_KEY under
its own salt, so it cannot be forged, and it needs no login. Unlike it, it names only the
contact, and it carries a timestamp: a link older than PREFERENCES_LINK_MAX_AGE_DAYS shows
the "expired" page (every marketing email brings a fresh one). The unsubscribe link stays
valid forever, so a customer can always opt out.
"""

from __future__ import annotations

import datetime as dt
import zlib

from django.conf import settings
from django.core import signing

SALT = "touchline.preferences"


def preferences_token(*, contact_id: int) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object({"c": int(contact_id)})


class TokenError(Exception):
    """An unusable link; `expired` tells a genuine but old link from a bad one."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def read_preferences_token(token: str) -> int:
    """The contact id of a genuine, unexpired token; raises TokenError otherwise."""
    max_age = dt.timedelta(days=settings.PREFERENCES_LINK_MAX_AGE_DAYS)
    try:
        payload = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=max_age)
        return int(payload["c"])
    except signing.SignatureExpired as exc:
        raise TokenError(expired=True) from exc
    except (signing.BadSignature, ValueError, TypeError, KeyError, AttributeError, zlib.error):
        raise TokenError(expired=False) from None


def preferences_url(*, contact_id: int) -> str:
    return f"{settings.PUBLIC_BASE_URL}/preferences/{preferences_token(contact_id=contact_id)}"
