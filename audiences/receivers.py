"""audiences' subscriptions to what messaging publishes: a contact whose fields, consent or
messages changed is marked for its dynamic segments to be looked at again."""

from __future__ import annotations

from typing import Any

from .dirty import contacts_mark_changed


def on_contacts_changed(sender: Any, *, contact_ids: list[int], **_: Any) -> None:
    contacts_mark_changed(contact_ids)


def on_contact_activity(sender: Any, *, contact_id: int, **_: Any) -> None:
    """A message status, a reply or a consent change of one contact."""
    contacts_mark_changed([contact_id])
