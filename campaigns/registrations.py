"""What campaigns registers with the apps below it at start-up (they cannot import us): which
broadcasts use a template (messaging refuses to delete it), and the `broadcast` scope of
segment engagement conditions (`{"engagement": "clicked", "broadcast": "winter-sale"}`)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from .models import Broadcast, BroadcastRecipient

# A broadcast in these states will not send again, so it uses no template any more.
FINISHED = (Broadcast.Status.COMPLETED, Broadcast.Status.CANCELLED)


def broadcast_template_users(slug: str, channel: str) -> list[str]:
    """One line per unfinished broadcast that may send the template `slug` on `channel`:
    a channel in its order, or any channel when the order has "preferred"."""
    users = []
    broadcasts = (
        Broadcast.objects.filter(template_slug=slug)
        .exclude(status__in=FINISHED)
        .order_by("slug")
        .only("slug", "status", "channel_order")
    )
    for broadcast in broadcasts:
        order = broadcast.channel_order if isinstance(broadcast.channel_order, list) else []
        if channel in order or "preferred" in order:
            users.append(f"broadcast “{broadcast.slug}” ({broadcast.status})")
    return users


def _validate_broadcast_scope(value: Any, path: str, errors) -> None:
    from audiences.engagement import validate_slug

    validate_slug(value, path, errors, exists=Broadcast.objects.all(), noun="broadcast")


def _broadcast_messages(value: str) -> QuerySet:
    return BroadcastRecipient.objects.filter(broadcast__slug=value, message__isnull=False).values(
        "message_id"
    )


def register() -> None:
    from audiences.registry import MessageScope, register_message_scope
    from messaging.template_usage import register_template_usage

    register_template_usage("campaigns", broadcast_template_users)
    register_message_scope(
        MessageScope(
            "broadcast",
            _validate_broadcast_scope,
            _broadcast_messages,
            "messages a broadcast sent",
        )
    )
