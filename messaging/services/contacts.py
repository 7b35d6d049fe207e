"""Contacts: create, update, and flag an address a provider called dead."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from channels_app.channels import Channel, normalize_phone

from .. import signals
from ..models import ConsentSource, Contact, Message
from .consent import consent_set

CONTACT_FIELDS = (
    "email",
    "phone",
    "whatsapp",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "preferred_channel",
)


def contacts_changed_announce(contact_ids: list[int]) -> None:
    """Tell apps above messaging (audiences' live segments) inside the transaction that
    changed the contacts, so what they write (one mark row) commits or rolls back with it."""
    if contact_ids:
        signals.contacts_changed.send(sender=Contact, contact_ids=list(contact_ids))


def _clean_contact_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields = {k: data[k] for k in CONTACT_FIELDS if k in data and data[k] is not None}
    for name in ("phone", "whatsapp"):
        if fields.get(name):
            fields[name] = normalize_phone(fields[name])
    if fields.get("email"):
        fields["email"] = fields["email"].strip().lower()
    return fields


def _merge_attributes(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current or {})
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)  # null removes an attribute
        else:
            merged[key] = value
    return merged


def contact_upsert(
    *,
    external_id: str | None,
    data: dict[str, Any],
    created_via: str = Contact.CreatedVia.API,
    consent_source: str = ConsentSource.API,
    actor_id: int | None = None,
) -> tuple[Contact, bool]:
    """Create or update the contact with this external id: given fields are set, attributes
    merged key by key (a null value removes a key), consent changes recorded. Without an
    external id a new contact is created (e.g. known only by the address it wrote from)."""
    fields = _clean_contact_fields(data)
    if external_id is not None and not data.get("consent"):
        # Most upserts (every event names its contact) repeat what is stored: one plain read,
        # no lock, no write. A concurrent change is no different from one a moment later.
        contact = next(iter(Contact.objects.filter(external_id=external_id).order_by()[:1]), None)
        if contact is not None and not _contact_changes(contact, fields, data):
            return contact, False
    with transaction.atomic():
        contact = None
        if external_id is not None:
            contact = Contact.objects.select_for_update().filter(external_id=external_id).first()
        created = contact is None
        if created:
            try:
                with transaction.atomic():
                    contact = Contact.objects.create(
                        external_id=external_id,
                        created_via=created_via,
                        attributes=_merge_attributes({}, data.get("attributes") or {}),
                        **fields,
                    )
            except IntegrityError:
                # Another request created it first: update that one instead.
                contact = Contact.objects.select_for_update().get(external_id=external_id)
                created = False
        changed = created or _apply_contact_changes(contact, fields, data)
        if changed:
            contacts_changed_announce([contact.pk])
        for channel, status in (data.get("consent") or {}).items():
            consent_set(
                contact=contact,
                channel=channel,
                status=status,
                source=consent_source,
                actor_id=actor_id,
            )
    return contact, created


# A provider's verdict on an address stops counting once the contact has another address.
_ADDRESS_FLAGS = {
    "email": "email_undeliverable",
    "phone": "phone_invalid",
    "whatsapp": "whatsapp_invalid",
}


def _contact_changes(contact: Contact, fields: dict[str, Any], data: dict[str, Any]) -> set[str]:
    """The names of the contact's fields these inputs would change."""
    changed = {name for name, value in fields.items() if getattr(contact, name) != value}
    if data.get("attributes"):
        merged = _merge_attributes(contact.attributes, data["attributes"])
        if merged != (contact.attributes or {}):
            changed.add("attributes")
    return changed


def _apply_contact_changes(contact: Contact, fields: dict[str, Any], data: dict[str, Any]) -> bool:
    changed = _contact_changes(contact, fields, data)
    if not changed:
        return False  # nothing to write: an UPDATE of every column would only churn the row
    for name in changed & set(fields):
        if name in _ADDRESS_FLAGS:
            setattr(contact, _ADDRESS_FLAGS[name], False)
            changed.add(_ADDRESS_FLAGS[name])
        setattr(contact, name, fields[name])
    if "attributes" in changed:
        contact.attributes = _merge_attributes(contact.attributes, data["attributes"])
    contact.save(update_fields=[*sorted(changed), "updated_at"])
    return True


def contact_update(
    *,
    contact: Contact,
    data: dict[str, Any],
    consent_source: str = ConsentSource.API,
    actor_id: int | None = None,
) -> Contact:
    """Apply given fields, attributes and consent to a known contact (e.g. one found by the
    address a request named)."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().get(pk=contact.pk)
        if _apply_contact_changes(locked, _clean_contact_fields(data), data):
            contacts_changed_announce([locked.pk])
        for channel, status in (data.get("consent") or {}).items():
            consent_set(
                contact=locked,
                channel=channel,
                status=status,
                source=consent_source,
                actor_id=actor_id,
            )
    return locked


def mark_address_bad(message: Message) -> None:
    """The provider says this message's address is dead: flag it, if it is still the contact's
    current address for that channel (a late report about an old address changes nothing)."""
    field = {Channel.EMAIL: "email", Channel.SMS: "phone", Channel.WHATSAPP: "whatsapp"}[
        message.channel
    ]
    current = Contact.objects.filter(pk=message.contact_id).values_list(field, "phone").first()
    if current is None:
        return
    address = current[0] or (current[1] if field == "whatsapp" else "")
    if (
        address
        and address.lower() == message.to_address.lower()
        and Contact.objects.filter(pk=message.contact_id).update(**{_ADDRESS_FLAGS[field]: True})
    ):
        contacts_changed_announce([message.contact_id])
