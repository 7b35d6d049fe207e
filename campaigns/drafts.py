"""Writing draft broadcasts (create, change, delete), for the admin and the API alike.

Only a draft can be changed: what a launched broadcast sends (its audience, message, timing)
is what its recipients were frozen with, so a change afterwards is refused here, in the one
writer, whatever the caller hid. Launch, pause, resume and cancel are campaigns.services'.
Every refusal is a BroadcastError with field-level messages.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audiences.models import Segment
from channels_app.channels import Channel
from messaging.conversion import conversion_errors
from messaging.models import Template

from .errors import BroadcastError
from .models import Broadcast
from .services import launch_errors

PREFERRED = "preferred"
CHANNEL_CHOICES = (PREFERRED, *Channel.values)
MAX_THROTTLE = 100_000

# The fields a draft's writer accepts (segments by object, the rest as model values).
FIELDS = (
    "name",
    "slug",
    "description",
    "category",
    "topic",
    "template_slug",
    "channel_order",
    # experiments (campaigns.services.experiments validates them)
    "variants",
    "holdout_percent",
    "variant_test_percent",
    "winner_after_hours",
    "winner_metric",
    "send_mode",
    "send_at",
    "local_send_date",
    "local_send_time",
    "throttle_per_minute",
    "end_at",
    "quiet_hours_start",
    "quiet_hours_end",
    "frequency_cap_action",
    "conversion_events",
    "conversion_window_hours",
    "revenue_property",
    "attribution_model",
)


class _Errors(dict):
    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


def template_channels(slug: str) -> list[str]:
    """The channels the template family `slug` has a template for."""
    return sorted(Template.objects.filter(slug=slug).values_list("channel", flat=True))


def broadcast_validate(
    *, values: dict[str, Any], segments: list[Segment], exclude_segments: list[Segment]
) -> None:
    """BroadcastError unless `values` (every field of FIELDS) make a sendable broadcast."""
    errors = _Errors()
    order = values.get("channel_order")
    if not isinstance(order, list) or not order:
        errors.add("channel_order", "Choose at least one channel, in the order to try them.")
    else:
        bad = [c for c in order if c not in CHANNEL_CHOICES]
        if bad:
            errors.add("channel_order", f"Choose among: {', '.join(CHANNEL_CHOICES)}.")
        elif len(set(order)) != len(order):
            errors.add("channel_order", "Each channel once.")
    slug = values.get("template_slug") or ""
    have = template_channels(slug) if slug else []
    if not slug:
        errors.add("template_slug", "Choose a template family.")
    elif not have:
        errors.add("template_slug", f"No template has the slug {slug!r}.")
    elif isinstance(order, list) and not (set(have) & set(order) or (PREFERRED in order and have)):
        errors.add(
            "channel_order",
            f"The template family {slug!r} has templates for {', '.join(have)} only: "
            "put at least one of them in the order.",
        )
    if not segments:
        errors.add("segments", "Choose at least one segment.")
    both = {s.pk for s in segments} & {s.pk for s in exclude_segments}
    if both:
        errors.add("exclude_segments", "A segment cannot be both included and excluded.")
    mode = values.get("send_mode")
    if mode == Broadcast.SendMode.AT and not values.get("send_at"):
        errors.add("send_at", "Give the time to send at.")
    if mode == Broadcast.SendMode.LOCAL:
        if not values.get("local_send_date"):
            errors.add("local_send_date", "Give the date to send on.")
        if not values.get("local_send_time"):
            errors.add("local_send_time", "Give the local time to send at.")
    end_at, send_at = values.get("end_at"), values.get("send_at")
    if end_at and mode == Broadcast.SendMode.AT and send_at and end_at <= send_at:
        errors.add("end_at", "The end of the send window comes after the send time.")
    throttle = values.get("throttle_per_minute")
    if throttle is not None and not 1 <= throttle <= MAX_THROTTLE:
        errors.add("throttle_per_minute", f"Between 1 and {MAX_THROTTLE} (empty: no limit).")
    for name, messages in conversion_errors(values).items():
        for message in messages:
            errors.add(name, message)
    if values.get("category") not in Broadcast.Category.values:
        errors.add("category", f"Choose one of: {', '.join(Broadcast.Category.values)}.")
    # What the launch will refuse (a send time already passed, …), said now rather than at
    # launch: the launch's own checks, on the values as they would be saved.
    draft = Broadcast(**{k: v for k, v in values.items() if k in FIELDS})
    later = launch_errors(draft, has_segments=bool(segments), now=timezone.now())
    for name, messages in later.items():
        if name not in errors:
            for message in messages:
                errors.add(name, message)
    if errors:
        raise BroadcastError(dict(errors))


def _defaults() -> dict[str, Any]:
    draft = Broadcast()
    return {name: getattr(draft, name) for name in FIELDS}


@transaction.atomic
def broadcast_create(
    *,
    values: dict[str, Any],
    segments: list[Segment],
    exclude_segments: list[Segment] = (),
    created_by: Any = None,
) -> Broadcast:
    """A new draft. `values` holds FIELDS (missing ones take the model's defaults)."""
    merged = {**_defaults(), **{k: v for k, v in values.items() if k in FIELDS}}
    if Broadcast.objects.filter(slug=merged.get("slug")).exists():
        raise BroadcastError({"slug": ["A broadcast with this slug exists."]})
    broadcast_validate(
        values=merged, segments=list(segments), exclude_segments=list(exclude_segments)
    )
    try:
        with transaction.atomic():
            broadcast = Broadcast.objects.create(**merged, created_by=created_by)
    except IntegrityError:  # the same slug, created concurrently
        raise BroadcastError({"slug": ["A broadcast with this slug exists."]}) from None
    broadcast.segments.set(segments)
    broadcast.exclude_segments.set(exclude_segments)
    return broadcast


def _locked_draft(broadcast: Broadcast) -> Broadcast:
    locked = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
    if locked.status != Broadcast.Status.DRAFT:
        raise BroadcastError(
            {
                "": [
                    f"This broadcast is {locked.get_status_display().lower()}: only a draft "
                    "can be changed. Create a new broadcast to send something else."
                ]
            }
        )
    return locked


@transaction.atomic
def broadcast_update(
    *,
    broadcast: Broadcast,
    values: dict[str, Any],
    segments: list[Segment] | None = None,
    exclude_segments: list[Segment] | None = None,
) -> Broadcast:
    """Change a draft (the slug is fixed); refused once launched."""
    broadcast = _locked_draft(broadcast)
    merged = {name: getattr(broadcast, name) for name in FIELDS}
    merged.update({k: v for k, v in values.items() if k in FIELDS and k != "slug"})
    segments = list(broadcast.segments.all()) if segments is None else list(segments)
    if exclude_segments is None:
        exclude_segments = list(broadcast.exclude_segments.all())
    broadcast_validate(values=merged, segments=segments, exclude_segments=list(exclude_segments))
    for name, value in merged.items():
        setattr(broadcast, name, value)
    broadcast.save()
    broadcast.segments.set(segments)
    broadcast.exclude_segments.set(exclude_segments)
    return broadcast


@transaction.atomic
def broadcast_delete(*, broadcast: Broadcast) -> None:
    """Delete a draft; a launched broadcast is kept (its recipients and report are history)."""
    _locked_draft(broadcast).delete()
