"""The staff inbox and the full contact timeline (admin pages under /admin/touchline/)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages as flash
from django.contrib.admin import site
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.services import audit_record
from channels_app.channels import Channel

from . import services
from .conversations import conversation_open, conversation_resolve
from .models import Contact, Conversation, Direction, Message, Touchpoint

TIMELINE_PAGE = 50


class ReplyForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices)
    subject = forms.CharField(required=False, max_length=500)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), max_length=1600)


def _context(request: HttpRequest, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, **extra}


@permission_required("messaging.use_inbox", raise_exception=True)
def inbox(request: HttpRequest) -> HttpResponse:
    """Conversations waiting for a human, newest reply first."""
    conversations = (
        Conversation.objects.exclude(status=Conversation.Status.RESOLVED)
        .select_related("contact", "last_inbound", "assigned_to")
        .order_by("-last_inbound_at")[:200]
    )
    return render(
        request,
        "touchline/inbox/list.html",
        _context(request, "Inbox", conversations=conversations),
    )


@permission_required("messaging.use_inbox", raise_exception=True)
def conversation(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Read the thread across channels and answer; opening it pauses marketing journeys.
    Answering writes to a customer, so it needs `send_message` too."""
    can_reply = request.user.has_perm("messaging.send_message")
    if request.method == "POST" and not can_reply:
        raise PermissionDenied
    contact = get_object_or_404(Contact, pk=contact_id)
    thread = get_object_or_404(Conversation, contact=contact)
    if thread.status != Conversation.Status.RESOLVED:
        conversation_open(conversation=thread, user_id=request.user.pk)
    last_channel = thread.last_inbound.channel if thread.last_inbound else Channel.SMS
    form = ReplyForm(request.POST or None, initial={"channel": last_channel})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        subject = data["subject"]
        if data["channel"] == Channel.EMAIL and not subject:
            last = thread.last_inbound.subject if thread.last_inbound else ""
            subject = last if last.lower().startswith("re:") else f"Re: {last or 'your message'}"
        try:
            message, _ = services.message_create(
                contact=contact,
                channel=data["channel"],
                body=data["body"],
                subject=subject,
                source="inbox",
                actor_id=request.user.pk,
            )
        except services.MessageRequestError as exc:
            for field, errors in exc.errors.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            audit_record(
                actor=request.user,
                action="reply",
                target=contact,
                request=request,
                details={"message": str(message.pk), "channel": message.channel},
            )
            flash.success(request, f"Reply {message.status} on {message.get_channel_display()}.")
            return HttpResponseRedirect(request.path)
    history = list(
        Message.objects.filter(contact=contact)
        .select_related("template")
        .order_by("-created_at")[:100]
    )[::-1]
    return render(
        request,
        "touchline/inbox/thread.html",
        _context(
            request,
            f"Conversation with {contact}",
            contact=contact,
            thread=thread,
            history=history,
            form=form if can_reply else None,
            Direction=Direction,
        ),
    )


@require_POST
@permission_required("messaging.use_inbox", raise_exception=True)
def resolve(request: HttpRequest, contact_id: int) -> HttpResponse:
    thread = get_object_or_404(Conversation, contact_id=contact_id)
    conversation_resolve(conversation=thread, user_id=request.user.pk)
    audit_record(actor=request.user, action="resolve", target=thread, request=request)
    flash.success(request, "Resolved. Paused journeys resume.")
    return HttpResponseRedirect(reverse("touchline-inbox"))


def contact_timeline(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Every touchpoint of a contact, filterable, paginated by keyset (fast at any depth)."""
    if not request.user.has_perms(("messaging.view_touchpoint", "messaging.view_contact")):
        raise PermissionDenied
    contact = get_object_or_404(Contact, pk=contact_id)
    channel = request.GET.get("channel", "")
    kind = request.GET.get("kind", "")
    qs = Touchpoint.objects.filter(contact=contact)
    if channel in Channel.values:
        qs = qs.filter(channel=channel)
    if kind:
        qs = qs.filter(kind=kind)
    before = request.GET.get("before", "")
    if before:
        try:
            stamp, _, last_id = before.partition("_")
            at = dt.datetime.fromisoformat(stamp)
            qs = qs.filter(Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=int(last_id)))
        except ValueError:
            pass
    rows = list(qs.order_by("-occurred_at", "-id")[: TIMELINE_PAGE + 1])
    more = len(rows) > TIMELINE_PAGE
    rows = rows[:TIMELINE_PAGE]
    next_cursor = f"{rows[-1].occurred_at.isoformat()}_{rows[-1].pk}" if more and rows else ""
    kinds = [
        "queued",
        "sent",
        "delivered",
        "read",
        "failed",
        "skipped",
        "replied",
        "opened",
        "clicked",
        "consent_changed",
        "event",
        "journey_entered",
        "send_held",
        "converted",
    ]
    return render(
        request,
        "touchline/inbox/timeline.html",
        _context(
            request,
            f"Timeline of {contact}",
            contact=contact,
            rows=rows,
            channel=channel,
            kind=kind,
            next_cursor=next_cursor,
            channels=Channel.choices,
            kinds=kinds,
        ),
    )
