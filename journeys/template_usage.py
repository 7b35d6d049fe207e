"""Which journey steps use a template: registered with messaging.template_usage at start-up,
so a template a journey sends is not deleted from under it (messaging cannot import us)."""

from __future__ import annotations

from django.db.models import Q

from .models import Journey, Step
from .validation import SENDING_KINDS, step_channels


def journey_template_users(slug: str, channel: str) -> list[str]:
    """One line per step of a journey that is not archived and may send (or re-ask with)
    the template `slug` on `channel`: the same channels activation requires a version for."""
    steps = (
        Step.objects.filter(kind__in=SENDING_KINDS)
        .filter(Q(config__template=slug) | Q(config__reprompt_template=slug))
        .exclude(journey__status=Journey.Status.ARCHIVED)
        .select_related("journey")
        .order_by("journey__slug", "journey__version", "position", "id")
    )
    users = []
    for step in steps:
        if channel in step_channels(step.config or {}):
            journey = step.journey
            users.append(
                f"journey “{journey.slug}” v{journey.version} ({journey.status}), step “{step.key}”"
            )
    return users


def register() -> None:
    from messaging.template_usage import register_template_usage

    register_template_usage("journeys", journey_template_users)
