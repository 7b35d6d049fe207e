"""Send policies: the one place that decides whether a message may go out.

Every send path (direct API sends, admin sends, journeys) asks `check_send` right before the
provider call, inside the transaction that claims the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels_app.channels import Channel

from .models import Consent, ConsentStatus, Contact


class Category:
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    code: str = ""


ALLOW = Decision(True)


def consent_status(*, contact: Contact, channel: str) -> str:
    row = Consent.objects.filter(contact=contact, channel=channel).only("status").first()
    return row.status if row else ConsentStatus.UNKNOWN


def check_consent(*, status: str, channel: str, category: str) -> Decision:
    """Transactional: anything not unsubscribed. Marketing: SMS/WhatsApp need an explicit
    subscription; email may go to subscribed or unknown."""
    if status == ConsentStatus.UNSUBSCRIBED:
        return Decision(False, f"contact unsubscribed from {channel}", "unsubscribed")
    if (
        category == Category.MARKETING
        and channel in (Channel.SMS, Channel.WHATSAPP)
        and status != ConsentStatus.SUBSCRIBED
    ):
        return Decision(False, f"marketing {channel} needs an explicit subscription", "no_consent")
    return ALLOW


def check_address(*, contact: Contact, channel: str, address: str) -> Decision:
    if not address:
        return Decision(False, f"contact has no {channel} address", "no_address")
    if channel == Channel.EMAIL and contact.email_undeliverable:
        return Decision(False, "email address is undeliverable (hard bounce)", "undeliverable")
    if channel in (Channel.SMS, Channel.WHATSAPP) and contact.phone_invalid:
        return Decision(False, "phone number was rejected as invalid", "invalid_address")
    return ALLOW


def check_send(*, contact: Contact, channel: str, category: str, address: str) -> Decision:
    """Whether a message may be sent now; the reason when not."""
    decision = check_address(contact=contact, channel=channel, address=address)
    if not decision.allowed:
        return decision
    return check_consent(
        status=consent_status(contact=contact, channel=channel),
        channel=channel,
        category=category,
    )
