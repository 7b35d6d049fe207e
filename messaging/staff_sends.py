"""Template tests staff send from the admin: only ever to test contacts.

A test contact is a contact with `is_test` set, which only a user with
`messaging.manage_test_contacts` can set (superusers by default). "Send test to me" goes to
the test contacts the signed-in user owns (`test_owner`), or to their account's email, which
only user administrators can change. Whatever the view or action asks, `staff_test_send`
checks the recipient against the database, so a test can never reach a customer.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet

from . import services
from .models import Contact, Message, Template

SOURCE = "admin-test"


def staff_test_recipients(*, channel: str | None = None) -> QuerySet[Contact]:
    """Every test contact (with an address on `channel` when given), the user's own first."""
    qs = Contact.objects.filter(is_test=True, erased_at__isnull=True)
    if channel == "sms":
        qs = qs.exclude(phone="")
    elif channel == "whatsapp":
        qs = qs.exclude(Q(whatsapp="") & Q(phone=""))
    elif channel == "email":
        qs = qs.exclude(email="")
    return qs.select_related("test_owner").order_by("-id")


def staff_own_test_recipient(*, user: AbstractBaseUser, channel: str) -> Contact | None:
    """The user's newest test contact with an address on `channel`; for email, else one made
    for the email address on their account (set by whoever administers users)."""
    contact = staff_test_recipients(channel=channel).filter(test_owner=user).first()
    if contact is not None or channel != "email" or not getattr(user, "email", ""):
        return contact
    email = user.email.strip().lower()
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update()
            .filter(is_test=True, test_owner=user, email=email)
            .first()
        )
        if contact is None:
            contact = Contact.objects.create(
                email=email,
                first_name=getattr(user, "first_name", ""),
                last_name=getattr(user, "last_name", ""),
                created_via=Contact.CreatedVia.ADMIN,
                is_test=True,
                test_owner=user,
            )
    return contact


def staff_test_send(
    *,
    template: Template,
    contact: Contact,
    actor_id: int | None,
    context: dict[str, Any] | None = None,
) -> Message:
    """Queue a test of `template` to `contact`, which must be a test contact (checked in the
    database, not on the object passed). Raises MessageRequestError otherwise."""
    if not staff_test_recipients().filter(pk=contact.pk).exists():
        raise services.MessageRequestError(
            {
                "contact": [
                    "Tests go only to test contacts: this contact is not one. An administrator "
                    "can flag a contact as a test contact on its page."
                ]
            }
        )
    message, _ = services.message_create(
        contact=contact,
        channel=template.channel,
        template=template,
        context=context,
        source=SOURCE,
        actor_id=actor_id,
    )
    return message
