"""“Send me a test” from a broadcast's review page: the broadcast's message on each of its
channels, to the signed-in staff member's own test contacts only, through the real pipeline
(messaging.staff_sends: the recipient is checked against the database, policies apply)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser

from channels_app.channels import Channel
from messaging.models import Message, Template
from messaging.services import MessageRequestError
from messaging.staff_sends import staff_own_test_recipient, staff_test_send

from .dryrun import PREFERRED
from .models import Broadcast

ADDRESS_NAMES = {Channel.SMS: "phone number", Channel.WHATSAPP: "WhatsApp number"}


@dataclass
class TestSendResult:
    messages: list[Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def broadcast_context(broadcast: Broadcast) -> dict[str, object]:
    """What a broadcast's templates can use besides the contact."""
    return {"broadcast": {"name": broadcast.name, "slug": broadcast.slug}}


def broadcast_test_send(*, broadcast: Broadcast, user: AbstractBaseUser) -> TestSendResult:
    """One test per channel of the broadcast's order that has a template, each to the user's
    own test contact on that channel (email: their account's address)."""
    result = TestSendResult()
    templates = {t.channel: t for t in Template.objects.filter(slug=broadcast.template_slug)}
    order = [c for c in broadcast.channel_order if c != PREFERRED]
    if PREFERRED in broadcast.channel_order:
        order += [c for c in Channel.values if c not in order]
    for channel in order:
        template = templates.get(channel)
        if template is None:
            continue
        contact = staff_own_test_recipient(user=user, channel=channel)
        if contact is None:
            what = ADDRESS_NAMES.get(channel, f"{channel} address")
            result.problems.append(
                f"No {channel} test: you have no test contact with a {what}. An administrator "
                "can flag a contact as your test contact on its page."
            )
            continue
        try:
            message = staff_test_send(
                template=template,
                contact=contact,
                actor_id=user.pk,
                context=broadcast_context(broadcast),
            )
        except MessageRequestError as exc:
            result.problems.append(f"No {channel} test: {exc}")
            continue
        result.messages.append(message)
    if not templates:
        result.problems.append(f"The template family {broadcast.template_slug!r} is empty.")
    return result
