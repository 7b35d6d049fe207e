"""Rendering staff-authored Liquid templates (python-liquid) for a contact and event.

Liquid, unlike Django or Jinja templates, cannot reach Python objects or the database: the
template sees only the plain dicts built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.utils.html import strip_tags
from liquid.exceptions import LiquidError

from . import template_limits
from .email_html import inline_email_css

if TYPE_CHECKING:
    from .models import Contact, Template


_TEMPLATE_FIELDS = ("subject", "body", "html_body")
# A Twilio Content template's SID: "HX" and 32 hexadecimal digits.
CONTENT_SID_RE = re.compile(r"HX[0-9a-fA-F]{32}")
CONTENT_SID_MESSAGE = "A Twilio Content SID is HX followed by 32 hexadecimal digits."


class TemplateRenderError(ValueError):
    """A template that cannot be parsed or rendered; `errors` maps field → messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class RenderedContent:
    subject: str = ""
    body: str = ""
    html_body: str = ""
    content_sid: str = ""
    content_variables: dict[str, str] = field(default_factory=dict)


def describe_liquid_error(exc: Exception, source: str) -> str:
    """A one-line message with the line number, for staff reading an admin form; a limit
    says which one (and its setting)."""
    token = getattr(exc, "token", None)
    start = getattr(token, "start_index", None)
    message = template_limits.limit_message(exc)
    if message is None and isinstance(exc, LiquidError):
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
    elif message is None:
        # Not Liquid's own error (e.g. an integer too large to print): still the template's
        # fault, still a refusal rather than a server error.
        message = f"the template could not be rendered ({type(exc).__name__}: {exc})"[:300]
    if isinstance(start, int):
        message = f"line {source.count(chr(10), 0, start) + 1}: {message}"
    if template_limits.limit_message(exc) is not None:
        return template_limits.LimitMessage(message)
    return str(message)


def _render_source(source: str, context: dict[str, Any]) -> str:
    """Parse and render under the limits (messaging.template_limits). Any failure, whatever
    its type, is the template's and raises _Failed: never a server error."""
    try:
        return template_limits.parse(source).render(**context)
    except Exception as exc:  # any failure is the template's: see the docstring
        raise _Failed(describe_liquid_error(exc, source)) from exc


class _Failed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message  # a LimitMessage when a limit was hit


def _check(source: str, sample: dict[str, Any]) -> str | None:
    try:
        # Parsing catches syntax errors; rendering against an empty context catches unknown
        # filters and tags, which python-liquid only reports at render time.
        _render_source(source, sample)
    except _Failed as exc:
        return exc.message
    return None


def template_errors(template: Template) -> dict[str, list[str]]:
    """Field → error messages for a template; empty when every Liquid field is valid."""
    sample: dict[str, Any] = {
        "contact": {},
        "event": {},
        "message": {},
        "unsubscribe_url": "",
        "preferences_url": "",
    }
    errors: dict[str, list[str]] = {}
    for name in _TEMPLATE_FIELDS:
        problem = _check(getattr(template, name) or "", sample)
        if problem:
            errors.setdefault(name, []).append(problem)
    variables = template.content_variables or {}
    if not isinstance(variables, dict):
        errors["content_variables"] = ["Must be an object mapping variable names to Liquid."]
    else:
        for key, value in variables.items():
            problem = _check(str(value), sample)
            if problem:
                message = f"{key}: {problem}"
                if isinstance(problem, template_limits.LimitMessage):
                    message = template_limits.LimitMessage(message)
                errors.setdefault("content_variables", []).append(message)
    if template.channel == "email" and not (template.body or template.html_body):
        errors.setdefault("body", []).append("An email needs a text body or an HTML body.")
    if template.channel == "email" and not template.subject:
        errors.setdefault("subject", []).append("An email needs a subject.")
    if template.channel in ("sms", "whatsapp") and not (template.body or template.content_sid):
        errors.setdefault("body", []).append("Write a body (or, for WhatsApp, a content SID).")
    if template.content_sid and template.channel != "whatsapp":
        errors.setdefault("content_sid", []).append("Only WhatsApp templates have a content SID.")
    elif template.content_sid and not CONTENT_SID_RE.fullmatch(template.content_sid):
        errors.setdefault("content_sid", []).append(CONTENT_SID_MESSAGE)
    return errors


def contact_context(contact: Contact) -> dict[str, Any]:
    """What `{{ contact.… }}` sees: custom attributes, overlaid by the contact's own fields."""
    attributes = dict(contact.attributes or {})
    return {
        **attributes,
        "attributes": attributes,
        "id": contact.pk,
        "external_id": contact.external_id or "",
        "email": contact.email,
        "phone": contact.phone,
        "whatsapp": contact.whatsapp,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "name": f"{contact.first_name} {contact.last_name}".strip(),
        "locale": contact.locale,
        "timezone": contact.timezone,
    }


def _render(source: str, context: dict[str, Any], field_name: str) -> str:
    if not source:
        return ""
    try:
        return _render_source(source, context)
    except _Failed as exc:
        raise TemplateRenderError({field_name: [exc.message]}) from exc


def html_to_text(html: str) -> str:
    """A readable text part from an HTML body, for email clients that prefer text."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", html)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</h[1-6]>|</li>|</tr>", "\n", text)
    text = strip_tags(text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def render_content(
    *,
    contact: Contact,
    subject: str = "",
    body: str = "",
    html_body: str = "",
    content_sid: str = "",
    content_variables: dict[str, str] | None = None,
    event: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    unsubscribe_url: str = "",
    preferences_url: str = "",
) -> RenderedContent:
    """Render raw Liquid sources for one contact; raises TemplateRenderError.
    `unsubscribe_url` (marketing email) is `{{ unsubscribe_url }}`, `preferences_url` (the
    contact's preference center) `{{ preferences_url }}`."""
    context = {
        "contact": contact_context(contact),
        "event": event or {},
        "message": message or {},
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    # CSS is inlined here, on the one path preview and send share: many mail clients drop
    # <style> blocks.
    rendered_html = inline_email_css(_render(html_body, context, "html_body"))
    rendered_body = _render(body, context, "body")
    if not rendered_body and rendered_html:
        rendered_body = html_to_text(rendered_html)
    variables = {
        str(key): _render(str(value), context, "content_variables")
        for key, value in (content_variables or {}).items()
    }
    return RenderedContent(
        subject=" ".join(_render(subject, context, "subject").split()),
        body=rendered_body,
        html_body=rendered_html,
        content_sid=content_sid,
        content_variables=variables,
    )


def render_template(
    template: Template,
    *,
    contact: Contact,
    event: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    unsubscribe_url: str = "",
    preferences_url: str = "",
) -> RenderedContent:
    """Render a saved template for a contact: the same code path for preview and send."""
    return render_content(
        contact=contact,
        subject=template.subject,
        body=template.body,
        html_body=template.html_body,
        content_sid=template.content_sid,
        content_variables=template.content_variables,
        event=event,
        message=message,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
    )
