"""Channel → adapter, from dotted paths in settings.TOUCHLINE_PROVIDERS, imported lazily."""

from __future__ import annotations

import threading

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Provider

_lock = threading.Lock()
_instances: dict[str, Provider] = {}


def get_provider(channel: str) -> Provider:
    """The adapter for `channel` (one shared instance per process)."""
    provider = _instances.get(channel)
    if provider is None:
        with _lock:
            provider = _instances.get(channel)
            if provider is None:
                try:
                    path = settings.TOUCHLINE_PROVIDERS[channel]
                except KeyError:
                    raise LookupError(f"No provider configured for channel {channel!r}") from None
                provider = import_string(path)()
                _instances[channel] = provider
    return provider


def reset_providers() -> None:
    """Forget adapter instances (tests change settings between cases)."""
    with _lock:
        _instances.clear()
