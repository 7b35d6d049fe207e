"""Outbound webhook settings, each with its default (settings.py may override any of them)."""

from __future__ import annotations

from django.conf import settings

DEFAULTS: dict[str, object] = {
    # Seconds between the dispatcher's scans for due retries (the beat schedule uses it).
    "OUTBOUND_WEBHOOK_DISPATCH_INTERVAL_SECONDS": 10.0,
    # The wait before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h (about 17.6 h in all,
    # 7 attempts), each stretched by up to 20 % of jitter; then the delivery fails.
    "OUTBOUND_WEBHOOK_RETRY_DELAYS": [5, 300, 1800, 7200, 18000, 36000],
    # A Retry-After longer than this is not believed.
    "OUTBOUND_WEBHOOK_MAX_RETRY_AFTER_SECONDS": 86400,
    "OUTBOUND_WEBHOOK_TIMEOUT_SECONDS": 10.0,
    # A claimed attempt (or a dispatched one still queued) is claimable again after this.
    "OUTBOUND_WEBHOOK_LEASE_SECONDS": 120,
    "OUTBOUND_WEBHOOK_BATCH_SIZE": 200,
    # Failed deliveries in a row after which a subscription is disabled.
    "OUTBOUND_WEBHOOK_DISABLE_AFTER": 15,
    # How long a process may answer "which event types has anyone subscribed to?" from memory
    # (outbound.selectors.subscribed_event_types): the longest a subscription saved in another
    # process waits before it receives events. 0 reads the table on every event.
    "OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 1.0,
    # The only way a webhook reaches a non-public address: IP addresses or CIDR networks,
    # each optionally with :port ("127.0.0.1:9000", "10.1.0.0/16", "[::1]:8080").
    "OUTBOUND_WEBHOOK_ALLOWED_NETWORKS": [],
    # A CA bundle (PEM file) to verify https:// receivers with; empty means certifi's.
    "OUTBOUND_WEBHOOK_CA_BUNDLE": "",
    # Fernet keys for the subscriptions' signing secrets: the first encrypts, all decrypt.
    # Empty means one key derived from SECRET_KEY (outbound.encryption).
    "OUTBOUND_SECRET_KEYS": [],
}


def get(name: str):
    return getattr(settings, name, DEFAULTS[name])
