"""messaging's subscriptions to what channels_app publishes (connected in apps.ready)."""

from __future__ import annotations

from typing import Any

from channels_app.events import InboundEvent, TrackingEvent

from .provider_events import inbound_message_apply, tracking_events_apply


def on_tracking_received(sender: Any, *, events: list[TrackingEvent], **_: Any) -> None:
    tracking_events_apply(events=events)


def on_inbound_received(sender: Any, *, event: InboundEvent, **_: Any) -> None:
    inbound_message_apply(event=event)
