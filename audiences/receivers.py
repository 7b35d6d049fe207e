"""audiences' subscriptions to what messaging publishes: a contact whose fields, consent or
messages changed is marked for its dynamic segments to be looked at again."""

from __future__ import annotations

from typing import Any

from .dirty import contacts_mark_changed


def on_contacts_changed(sender: Any, *, contact_ids: list[int], **_: Any) -> None:
    contacts_mark_changed(contact_ids)


# The send path's own steps: a delivery runs a fixed short list of statements
# (tests/messaging/test_delivery.py) and gains none here. What a segment can tell about a
# message (delivered, opened, clicked, replied, failed, …) arrives through the later status
# callbacks; "sent" alone is seen by the periodic recompute.
SEND_PATH_KINDS = frozenset({"queued", "sending", "sent", "held", "skipped", "unknown"})


def on_contact_activity(sender: Any, *, contact_id: int, **_: Any) -> None:
    """A reply or a consent change of one contact."""
    contacts_mark_changed([contact_id])


def on_message_status_changed(sender: Any, *, contact_id: int, kind: str = "", **_: Any) -> None:
    if kind not in SEND_PATH_KINDS:
        contacts_mark_changed([contact_id])
