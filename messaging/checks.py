"""System checks on settings whose combination would silently stop delivery."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.compatibility)
def provider_call_fits_the_delivery_soft_limit(**_: Any) -> list[checks.CheckMessage]:
    """A send starts only when its provider call's worst case fits before the delivery task's
    soft limit (config/task_limits.py): a provider timeout too long for it would fail every
    send."""
    from config import task_limits

    from .services import provider_call_seconds
    from .tasks import deliver_message

    soft, _ = task_limits.limits_of(deliver_message)
    need = provider_call_seconds()
    if soft is not None and need >= soft:
        return [
            checks.Error(
                f"PROVIDER_TIMEOUT_SECONDS is too long for the delivery task: a provider call "
                f"may take {need:.0f} s (connect + read timeouts + 5 s), not less than its "
                f"{soft:.0f} s soft time limit, so no message would ever be sent.",
                hint="Lower PROVIDER_TIMEOUT_SECONDS (default 10).",
                id="messaging.E001",
            )
        ]
    return []
