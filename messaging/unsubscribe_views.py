"""`/u/<token>`: RFC 8058 one-click unsubscribe (POST) and the page a person sees (GET).

No login and no CSRF token: mailbox providers POST `List-Unsubscribe=One-Click` from their
servers and cannot send one; the signed token is the authority. A GET never unsubscribes
(link scanners prefetch GETs): it shows a button that POSTs the same body.

A message sent for a topic (a journey's or broadcast's `topic`) unsubscribes the contact
from that topic only: the customer said "not this kind of mail", and the other topics and
the channel itself (receipts, other newsletters) stay as they chose on the preference page.
A message without a topic unsubscribes the channel, as before.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import ConsentSource, ConsentStatus, Contact, Direction, Message, TouchpointKind
from .policies import consent_status, topic_status
from .services.consent import consent_set
from .services.topics import topic_subscription_set
from .services.touchpoints import touchpoint_record
from .unsubscribe import read_token

BAD_LINK = "This unsubscribe link is not valid.\n"


def _bad() -> HttpResponse:
    return HttpResponse(BAD_LINK, status=400, content_type="text/plain; charset=utf-8")


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def one_click_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    target = read_token(token)
    contact = Contact.objects.filter(pk=target.contact_id).only("pk").first() if target else None
    if target is None or contact is None:
        return _bad()
    # The message the link came in (gone if it was erased since: the ledger row stays).
    message = (
        Message.objects.filter(pk=target.message_id, contact_id=contact.pk)
        .select_related("topic")
        .only("pk", "topic")
        .first()
    )
    topic = message.topic if message else None
    context = {"token": token, "channel": target.channel, "topic": topic}
    if request.method == "GET":
        if topic is not None:
            status = topic_status(contact=contact, topic=topic)
        else:
            status = consent_status(contact=contact, channel=target.channel)
        page = render(
            request,
            "touchline/unsubscribe.html",
            {**context, "done": status == ConsentStatus.UNSUBSCRIBED},
        )
        return _no_store(page)
    if request.POST.get("List-Unsubscribe") != "One-Click":
        return _bad()
    with transaction.atomic():
        if topic is not None:
            changed = topic_subscription_set(
                contact=contact,
                topic=topic,
                status=ConsentStatus.UNSUBSCRIBED,
                source=ConsentSource.ONE_CLICK,
                message=message,
                note="one-click unsubscribe (RFC 8058)",
            )
        else:
            changed = consent_set(
                contact=contact,
                channel=target.channel,
                status=ConsentStatus.UNSUBSCRIBED,
                source=ConsentSource.ONE_CLICK,
                message=message,
                note="one-click unsubscribe (RFC 8058)",
            )
        if changed:
            touchpoint_record(
                contact_id=contact.pk,
                kind=TouchpointKind.UNSUBSCRIBED,
                direction=Direction.INBOUND,
                channel=target.channel,
                message_id=message.pk if message else None,
                data={
                    "source": ConsentSource.ONE_CLICK,
                    **({"topic": topic.slug} if topic else {}),
                },
            )
    page = render(request, "touchline/unsubscribe.html", {**context, "done": True})
    return _no_store(page)
