"""Staff tools for the template editor, under /admin/touchline/templates/.

- `template_preview`: renders the editor's unsaved fields for a contact and a sample event
  through `render_content` (the code that sends) and answers what would go out. Template
  editors only (`change_template`).
- `template_preview_contacts`: the newest contacts, for the preview's picker.
- `template_send_test`: sends the saved template to a test contact: the signed-in staff
  member's own, or one they name (`send_test_message`; see staff_sends.py).

Errors share one shape, `{"errors": {field: [message, …]}}`. A template's own fields with
Liquid or other problems answer 200 (the preview worked; the template needs fixing); a
request that cannot be previewed at all (not JSON, unknown contact, sample event not an
object) answers 400; a missing permission 403.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.services import audit_record
from channels_app.channels import Channel

from . import policies, services
from .email_html import inline_email_css
from .models import Contact, Template
from .rendering import (
    RenderedContent,
    TemplateRenderError,
    html_to_text,
    render_content,
    template_errors,
)
from .sms import SMS_MAX_CHARACTERS, sms_segments
from .staff_sends import staff_own_test_recipient, staff_test_recipients, staff_test_send
from .template_limits import has_limit_error

PREVIEW_EVENT = {"order_id": "1001", "name": "order.completed"}
PICKER_CONTACTS = 50
_TEXT_FIELDS = ("subject", "body", "html_body", "content_sid")


class _BadRequest(Exception):
    def __init__(self, errors: dict[str, list[str]], status: int = 400) -> None:
        super().__init__(errors)
        self.errors = errors
        self.status = status


def _errors(errors: dict[str, list[str]], status: int) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=status)


def _forbidden(what: str) -> JsonResponse:
    return _errors({"__all__": [f"You do not have permission to {what}."]}, 403)


def _request_data(request: HttpRequest) -> dict[str, Any]:
    """The JSON object body, or the form fields of a form post."""
    if request.content_type != "application/json":
        return request.POST.dict()
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadRequest({"__all__": [f"The request body is not valid JSON: {exc}"]}) from exc
    if not isinstance(data, dict):
        raise _BadRequest({"__all__": ["The request body must be a JSON object."]})
    return data


def _json_object(value: Any, field: str, default: dict[str, Any]) -> dict[str, Any]:
    """A JSON object given as an object or as JSON text (the editor's raw textarea)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return dict(default)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _BadRequest({field: [f"Not valid JSON: {exc}"]}) from exc
    if not isinstance(value, dict):
        raise _BadRequest({field: ['Must be a JSON object, e.g. {"order_id": "1001"}.']})
    return value


def _sample_contact() -> Contact:
    """The unsaved contact previews use when none is picked."""
    return Contact(
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        phone="+14155552671",
        timezone="Europe/London",
    )


def _preview_contact(request: HttpRequest, value: Any) -> Contact:
    if value in (None, ""):
        return _sample_contact()
    if not request.user.has_perm("messaging.view_contact"):
        raise _BadRequest({"contact": ["You do not have permission to view contacts."]}, 403)
    try:
        pk = int(value)
    except (TypeError, ValueError) as exc:
        raise _BadRequest({"contact": ["A contact id is a number."]}) from exc
    contact = Contact.objects.filter(pk=pk).first()
    if contact is None:
        raise _BadRequest({"contact": [f"There is no contact with id {pk}."]})
    return contact


def _contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.pk,
        "label": str(contact),
        "email": contact.email,
        "phone": contact.phone,
        "whatsapp": contact.whatsapp,
    }


def _merge(errors: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    for name, messages in more.items():
        bucket = errors.setdefault(name, [])
        bucket.extend(m for m in messages if m not in bucket)


def _whatsapp_info(contact: Contact, content: RenderedContent) -> dict[str, Any]:
    """Which part goes out, decided by the same window check `message_create` uses."""
    now = timezone.now()
    has_body = bool(content.body.strip())
    decision = policies.check_whatsapp_window(
        contact=contact, now=now, has_body=has_body, has_content_sid=bool(content.content_sid)
    )
    sends = None  # skipped: outside the window and no content SID
    if decision.allowed:
        sends = "template" if decision.use_template else "freeform"
    last = contact.last_inbound_whatsapp_at
    return {
        "content_sid": content.content_sid,
        "content_variables": content.content_variables,
        "in_window": policies.in_whatsapp_window(contact, now),
        "last_inbound_at": last.isoformat() if last else None,
        # Inside the 24-hour window a freeform body wins over the content template.
        "freeform_inside_window": has_body,
        "sends_now": sends,
        "reason": decision.reason,
    }


def _sms_json(text: str) -> dict[str, Any]:
    info = sms_segments(text)
    return {
        "encoding": info.encoding,
        "characters": info.characters,
        "segments": info.segments,
        "per_segment": info.per_segment,
    }


@staff_member_required
@require_GET
def template_preview_contacts(request: HttpRequest) -> JsonResponse:
    """The 50 newest contacts for the preview's contact picker."""
    if not request.user.has_perm("messaging.change_template"):
        return _forbidden("preview templates")
    if not request.user.has_perm("messaging.view_contact"):
        return JsonResponse({"contacts": []})
    contacts = Contact.objects.order_by("-id")[:PICKER_CONTACTS]
    return JsonResponse({"contacts": [_contact_json(c) for c in contacts]})


@staff_member_required
@require_POST
def template_preview(request: HttpRequest) -> JsonResponse:
    """Render the editor's current, unsaved template fields for a contact and sample event."""
    if not request.user.has_perm("messaging.change_template"):
        return _forbidden("preview templates")
    try:
        data = _request_data(request)
        event = _json_object(data.get("event"), "event", PREVIEW_EVENT)
        contact = _preview_contact(request, data.get("contact"))
        fields = {name: data.get(name) or "" for name in _TEXT_FIELDS}
        bad = [name for name, value in fields.items() if not isinstance(value, str)]
        if bad:
            raise _BadRequest({name: ["Must be text."] for name in bad})
    except _BadRequest as exc:
        return _errors(exc.errors, exc.status)

    errors: dict[str, list[str]] = {}
    channel = data.get("channel") or ""
    if channel not in Channel.values:
        errors["channel"] = ["Choose a channel to see a preview."]
    try:
        variables = _json_object(data.get("content_variables"), "content_variables", {})
    except _BadRequest as exc:
        _merge(errors, exc.errors)
        variables = {}
    # The checks that stop a save (parse errors, missing subject…), then a render with the
    # real contact and event, which finds what only real data shows.
    _merge(
        errors, template_errors(Template(channel=channel, content_variables=variables, **fields))
    )
    answer: dict[str, Any] = {
        "channel": channel,
        "contact": _contact_json(contact),
        "errors": errors,
        "warnings": [],
        "rendered": None,
    }
    if "channel" in errors:
        return JsonResponse(answer)
    if has_limit_error(errors):
        # Over a limit is a refused request (the template could not be saved either).
        return JsonResponse(answer, status=400)
    try:
        content = render_content(
            contact=contact, content_variables=variables, event=event, **fields
        )
    except TemplateRenderError as exc:
        _merge(errors, exc.errors)
        return JsonResponse(answer, status=400 if has_limit_error(exc.errors) else 200)

    rendered: dict[str, Any] = {"subject": content.subject, "text": content.body}
    warnings: list[str] = answer["warnings"]
    if not contact.address_for(channel):
        warnings.append(f"This contact has no {channel} address: a send would be refused.")
    if channel == Channel.SMS:
        rendered["sms"] = _sms_json(content.body)
        if not content.body.strip():
            warnings.append("The rendered body is empty: a send would be refused.")
        elif len(content.body) > SMS_MAX_CHARACTERS:
            warnings.append(
                f"The rendered body is over {SMS_MAX_CHARACTERS} characters: "
                "a send would be refused."
            )
    elif channel == Channel.WHATSAPP:
        rendered["whatsapp"] = _whatsapp_info(contact, content)
    else:
        rendered["email"] = {
            "html": inline_email_css(content.html_body),
            "text": content.body,
            # The body rendered empty, so render_content made the text part from the HTML.
            "text_generated": bool(content.html_body)
            and content.body == html_to_text(content.html_body),
        }
    answer["rendered"] = rendered
    return JsonResponse(answer)


@staff_member_required
@require_POST
def template_send_test(request: HttpRequest, pk: int) -> JsonResponse:
    """Send the saved template to a test contact through `message_create`.

    `contact` (optional) names a test contact; without it the test goes to the signed-in
    user's own test contact for the channel (for email, their account's address). Any other
    recipient is refused: a test never reaches a customer.
    """
    user = request.user
    if not (
        user.has_perm("messaging.send_test_message") and user.has_perm("messaging.view_template")
    ):
        return _forbidden("send test messages")
    template = Template.objects.filter(pk=pk).first()
    if template is None:
        return _errors({"__all__": [f"There is no template with id {pk}."]}, 404)
    try:
        data = _request_data(request)
        event = _json_object(data.get("event"), "event", PREVIEW_EVENT)
    except _BadRequest as exc:
        return _errors(exc.errors, 400)
    if str(data.get("phone") or "").strip():
        # Earlier versions sent to any number typed here.
        return _errors(
            {"phone": ["Tests go only to test contacts; a phone number cannot be given here."]},
            400,
        )
    chosen = data.get("contact")
    if chosen not in (None, ""):
        try:
            contact_id = int(chosen)
        except (TypeError, ValueError):
            return _errors({"contact": ["A contact id is a number."]}, 400)
        contact = staff_test_recipients().filter(pk=contact_id).first()
        if contact is None:
            return _errors({"contact": [f"Contact {contact_id} is not a test contact."]}, 400)
    else:
        contact = staff_own_test_recipient(user=user, channel=template.channel)
        if contact is None:
            return _errors(
                {
                    "contact": [
                        f"You have no test contact with a {template.get_channel_display()} "
                        "address: ask an administrator to flag one as your test contact "
                        "(Contacts → the contact → Test recipient)."
                        if template.channel != Channel.EMAIL
                        else "Your admin user has no email address and no test contact: "
                        "ask an administrator to add one."
                    ]
                },
                400,
            )
    try:
        message = staff_test_send(
            template=template, contact=contact, actor_id=user.pk, context=event
        )
    except services.MessageRequestError as exc:
        return _errors(exc.errors, 400)
    audit_record(
        actor=user,
        action="test_send",
        target=template,
        request=request,
        details={"message": str(message.pk), "channel": message.channel},
    )
    # Delivery may already have run (its task is queued on commit): answer the current status.
    message.refresh_from_db(fields=["status", "error_message"])
    return JsonResponse(
        {
            "message": {
                "id": str(message.pk),
                "status": message.status,
                "channel": message.channel,
                "to": message.to_address,
                "error": message.error_message,
                "url": reverse("admin:messaging_message_change", args=[message.pk]),
            }
        },
        status=201,
    )
