"""The staff inbox: conversations with customers' unanswered replies."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import Contact, Conversation, Message


def conversation_record_inbound(*, contact: Contact, message: Message) -> Conversation:
    """A customer wrote: the conversation needs a reply (an open one stays open)."""
    conversation, _ = Conversation.objects.select_for_update().get_or_create(contact=contact)
    if conversation.status == Conversation.Status.RESOLVED:
        conversation.status = Conversation.Status.NEEDS_REPLY
    conversation.last_inbound = message
    conversation.last_inbound_at = message.received_at or timezone.now()
    conversation.save()
    return conversation


def conversation_open(*, conversation: Conversation, user_id: int) -> bool:
    """A staff member is in the conversation: the contact's marketing journeys pause."""
    with transaction.atomic():
        changed = (
            Conversation.objects.filter(pk=conversation.pk)
            .exclude(status=Conversation.Status.OPEN)
            .update(
                status=Conversation.Status.OPEN, assigned_to_id=user_id, opened_at=timezone.now()
            )
        )
        if changed:
            _publish(conversation, Conversation.Status.OPEN)
    conversation.refresh_from_db()
    return bool(changed)


def conversation_resolve(*, conversation: Conversation, user_id: int) -> bool:
    """Done: the conversation leaves the inbox and paused journeys resume."""
    with transaction.atomic():
        changed = (
            Conversation.objects.filter(pk=conversation.pk)
            .exclude(status=Conversation.Status.RESOLVED)
            .update(
                status=Conversation.Status.RESOLVED,
                resolved_at=timezone.now(),
                assigned_to_id=user_id,
            )
        )
        if changed:
            _publish(conversation, Conversation.Status.RESOLVED)
    conversation.refresh_from_db()
    return bool(changed)


def _publish(conversation: Conversation, status: str) -> None:
    contact_id = conversation.contact_id
    transaction.on_commit(
        lambda: signals.conversation_changed.send(
            sender=Conversation, contact_id=contact_id, status=status
        ),
        robust=True,
    )


def contact_in_open_conversation(*, contact_id: int) -> bool:
    return Conversation.objects.filter(
        contact_id=contact_id, status=Conversation.Status.OPEN
    ).exists()
