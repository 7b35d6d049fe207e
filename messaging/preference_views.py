"""`/preferences/<token>`: the hosted preference center (no login; the signed token names
the contact, messaging/preferences.py).

The page lists the contact's channels (those with an address) and the active topics, each a
checkbox with the state it was drawn with (a hidden `was_<key>` field); saving writes only
what the customer changed from that drawn state, through the consent services (ledger source
`preference_center`, a timeline entry each). An item whose state moved since the page was
drawn (a STOP texted, a one-click unsubscribe, while the page sat open) is never written: the
page is drawn again, saying so, for the customer to review. Resubscribing here is the customer's own
explicit choice, so it is allowed, except for an erased contact, who is never written to.
A normal HTML form with Django's CSRF token: it works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from channels_app.channels import Channel

from .models import (
    Consent,
    ConsentSource,
    ConsentStatus,
    Contact,
    Direction,
    Topic,
    TopicSubscription,
    TouchpointKind,
)
from .preferences import TokenError, read_preferences_token
from .services.consent import consent_set
from .services.topics import topic_effective, topic_subscription_set
from .services.touchpoints import touchpoint_record

NOTE = "preference center"
CHANNEL_LABELS = {
    Channel.EMAIL: "Email",
    Channel.SMS: "Text messages (SMS)",
    Channel.WHATSAPP: "WhatsApp",
}


@dataclass(frozen=True)
class Choice:
    key: str  # the form field's name
    label: str
    detail: str
    on: bool  # what the page shows now


def _channels(contact: Contact) -> list[str]:
    """The channels the contact has an address of their own on (WhatsApp: its own number)."""
    have = {
        Channel.EMAIL: contact.email,
        Channel.SMS: contact.phone,
        Channel.WHATSAPP: contact.whatsapp,
    }
    return [channel for channel, address in have.items() if address]


def _channel_on(channel: str, status: str) -> bool:
    # As the marketing policy reads it: email goes unless unsubscribed; SMS and WhatsApp
    # need an explicit subscription (messaging.policies.check_consent).
    if channel == Channel.EMAIL:
        return status != ConsentStatus.UNSUBSCRIBED
    return status == ConsentStatus.SUBSCRIBED


def _choices(contact: Contact) -> tuple[list[Choice], list[tuple[Topic, Choice]]]:
    consent = dict(Consent.objects.filter(contact=contact).values_list("channel", "status"))
    channels = [
        Choice(
            key=f"channel_{c}",
            label=CHANNEL_LABELS[c],
            detail="",
            on=_channel_on(c, consent.get(c, ConsentStatus.UNKNOWN)),
        )
        for c in _channels(contact)
    ]
    chosen = dict(
        TopicSubscription.objects.filter(contact=contact).values_list("topic_id", "status")
    )
    topics = [
        (
            t,
            Choice(
                key=f"topic_{t.slug}",
                label=t.name,
                detail=t.description,
                on=topic_effective(topic=t, status=chosen.get(t.pk, ConsentStatus.UNKNOWN)),
            ),
        )
        for t in Topic.objects.filter(is_active=True).order_by("position", "name")
    ]
    return channels, topics


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    # The token is in the URL: never sent to another site. Not "no-referrer": browsers then
    # send `Origin: null` with the form, which Django's CSRF check rightly refuses.
    response["Referrer-Policy"] = "same-origin"
    return response


def _unusable(request: HttpRequest, *, expired: bool) -> HttpResponse:
    return _page(
        request,
        "touchline/preferences_invalid.html",
        {"expired": expired},
        status=410 if expired else 404,
    )


@require_http_methods(["GET", "HEAD", "POST"])
def preference_center(request: HttpRequest, token: str) -> HttpResponse:
    try:
        contact_id = read_preferences_token(token)
    except TokenError as exc:
        return _unusable(request, expired=exc.expired)
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None or contact.erased_at is not None:
        # An erased contact has nothing left to choose, and is never resubscribed.
        return _unusable(request, expired=False)
    if request.method == "POST":
        changed = _save(request, contact)
        query = "&".join(f"changed={key}" for key in changed) if changed else "saved=1"
        return HttpResponseRedirect(f"{request.path}?{query}")
    channels, topics = _choices(contact)
    known = {c.key: c.label for c in [*channels, *(choice for _, choice in topics)]}
    changed = [known[key] for key in dict.fromkeys(request.GET.getlist("changed")) if key in known]
    return _page(
        request,
        "touchline/preferences.html",
        {
            "token": token,
            "channels": channels,
            "topics": [choice for _, choice in topics],
            "saved": request.GET.get("saved") == "1",
            "changed": changed,
            "name": contact.first_name,
        },
    )


def _drawn(request: HttpRequest, key: str) -> bool | None:
    """What the page showed for `key` when it was drawn (its hidden `was_<key>` field)."""
    return {"on": True, "off": False}.get(request.POST.get(f"was_{key}", ""))


def _wanted(request: HttpRequest, choice: Choice) -> bool | None:
    """The value to write for `choice`, or None to leave it alone: an item the page did not
    show, or one the customer did not change. A change to an item whose state moved since the
    page was drawn (a STOP, a one-click unsubscribe in another tab) is not written either:
    `_save` reports it, and the page is drawn again for the customer to review."""
    if choice.key not in set(request.POST.getlist("shown")):
        return None
    drawn = _drawn(request, choice.key)
    wanted = request.POST.get(choice.key) == "on"
    if drawn is None or wanted == drawn or choice.on != drawn:
        return None
    return wanted


def _save(request: HttpRequest, contact: Contact) -> list[str]:
    """Write what the customer changed on the page, compared with what the page showed when it
    was drawn (never with the state now: a page left open across a STOP must not undo it).
    The choices are read under the contact's row lock. Returns the keys of the shown items
    whose state changed since the page was drawn (left as they are now; a page without the
    drawn state counts as changed), for the page to ask the customer to review them."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().get(pk=contact.pk)
        if locked.erased_at is not None:
            return []
        channels, topics = _choices(locked)
        shown = set(request.POST.getlist("shown"))
        moved = [
            choice.key
            for choice in [*channels, *(choice for _, choice in topics)]
            if choice.key in shown and _drawn(request, choice.key) != choice.on
        ]
        for choice in channels:
            wanted = _wanted(request, choice)
            if wanted is None:
                continue
            channel = choice.key.removeprefix("channel_")
            status = ConsentStatus.SUBSCRIBED if wanted else ConsentStatus.UNSUBSCRIBED
            changed = consent_set(
                contact=locked,
                channel=channel,
                status=status,
                source=ConsentSource.PREFERENCE_CENTER,
                note=NOTE,
            )
            if changed and not wanted:
                touchpoint_record(
                    contact_id=locked.pk,
                    kind=TouchpointKind.UNSUBSCRIBED,
                    direction=Direction.INBOUND,
                    channel=channel,
                    data={"source": ConsentSource.PREFERENCE_CENTER},
                )
        for topic, choice in topics:
            wanted = _wanted(request, choice)
            if wanted is None:
                continue
            topic_subscription_set(
                contact=locked,
                topic=topic,
                status=ConsentStatus.SUBSCRIBED if wanted else ConsentStatus.UNSUBSCRIBED,
                source=ConsentSource.PREFERENCE_CENTER,
                note=NOTE,
            )
    return moved
