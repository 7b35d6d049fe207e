"""System checks on outbound webhook settings whose value would silently stop deliveries."""

from __future__ import annotations

from typing import Any

from django.core import checks

# deliver_webhook starts a request only when its overall deadline plus this margin (the claim
# and the record) fits before the task's soft limit.
REQUEST_MARGIN_SECONDS = 5


@checks.register(checks.Tags.compatibility)
def webhook_timeout_fits_the_delivery_soft_limit(**_: Any) -> list[checks.CheckMessage]:
    """A webhook timeout too long for the delivery task's soft limit would make every
    deliver_webhook give up before it claims the attempt, with no error anywhere."""
    from config import task_limits

    from . import conf
    from .tasks import deliver_webhook

    soft, _ = task_limits.limits_of(deliver_webhook)
    need = float(conf.get("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS")) + REQUEST_MARGIN_SECONDS
    if soft is not None and need >= soft:
        return [
            checks.Error(
                f"OUTBOUND_WEBHOOK_TIMEOUT_SECONDS is too long for the webhook delivery task: "
                f"a request may take {need:.0f} s (the timeout + {REQUEST_MARGIN_SECONDS} s), "
                f"not less than its {soft:.0f} s soft time limit, so no webhook would ever be "
                "delivered.",
                hint="Lower OUTBOUND_WEBHOOK_TIMEOUT_SECONDS (default 10).",
                id="outbound.E001",
            )
        ]
    return []
