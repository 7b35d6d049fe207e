"""Who may launch what. A transactional broadcast skips the marketing consent rules (an
SMS/WhatsApp opt-in), quiet hours and the frequency cap, so launching one needs a permission
of its own (no group holds it: an administrator grants it) or, over the API, its own scope."""

from __future__ import annotations

from typing import Any

LAUNCH_PERMISSION = "campaigns.launch_broadcast"
TRANSACTIONAL_PERMISSION = "campaigns.send_transactional_broadcast"
TRANSACTIONAL_SCOPE = "broadcasts:transactional"
TRANSACTIONAL_REFUSAL = (
    "Launching a transactional broadcast needs the permission “Can launch transactional "
    "broadcasts”: it skips the marketing consent rules, quiet hours and the frequency cap. "
    "Make it a marketing broadcast, or ask an administrator."
)


def key_has_scope(api_key: Any, scope: str) -> bool:
    scopes = getattr(api_key, "scopes", None) or []
    return scope in scopes or "*" in scopes
