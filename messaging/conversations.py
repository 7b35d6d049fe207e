"""The staff inbox: conversations with customers' unanswered replies."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import Contact, Conversation, Direction, Message

# Set in an inbound message's metadata when nobody needs to answer it: "keyword" (STOP,
# START, HELP: answered automatically) or what consumed it ("survey": taken as an answer).
HANDLED_BY = "handled_by"


def conversation_record_inbound(*, contact: Contact, message: Message) -> Conversation:
    """A customer wrote: the conversation needs a reply (an open one stays open)."""
    conversation, _ = Conversation.objects.select_for_update().get_or_create(contact=contact)
    if conversation.status == Conversation.Status.RESOLVED:
        conversation.status = Conversation.Status.NEEDS_REPLY
    conversation.last_inbound = message
    conversation.last_inbound_at = message.received_at or timezone.now()
    conversation.save()
    return conversation


def inbound_mark_handled(*, message: Message, handled_by: str) -> None:
    """This customer's message needs no human (see HANDLED_BY)."""
    message.metadata = {**(message.metadata or {}), HANDLED_BY: handled_by}
    Message.objects.filter(pk=message.pk).update(metadata=message.metadata)


def conversation_inbound_handled(*, message_id, handled_by: str) -> bool:
    """A customer's message was dealt with automatically after it arrived (a survey took it
    as its answer): it stops waiting for a reply, and its conversation leaves the inbox
    unless another of the contact's messages still waits. An open conversation (a staff
    member is in it) is left as it is. True when the conversation left the inbox."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, direction=Direction.INBOUND)
            .first()
        )
        if message is None:
            return False
        inbound_mark_handled(message=message, handled_by=handled_by)
        conversation = (
            Conversation.objects.select_for_update().filter(contact_id=message.contact_id).first()
        )
        if conversation is None or conversation.status != Conversation.Status.NEEDS_REPLY:
            return False
        others = Message.objects.filter(
            contact_id=message.contact_id, direction=Direction.INBOUND
        ).exclude(metadata__has_key=HANDLED_BY)
        if conversation.resolved_at is not None:
            others = others.filter(received_at__gt=conversation.resolved_at)
        if others.exists():
            return False
        # Not a staff resolution: resolved_at and assigned_to stay as they were.
        conversation.status = Conversation.Status.RESOLVED
        conversation.save(update_fields=["status", "updated_at"])
    return True


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
