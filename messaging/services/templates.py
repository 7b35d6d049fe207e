"""Writes of templates outside the admin (the API): the admin's own validation, unique
(slug, channel), and no deleting a template something still sends (messaging.template_usage)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from ..models import Template
from ..template_usage import template_users

TEMPLATE_FIELDS = (
    "name",
    "description",
    "subject",
    "body",
    "html_body",
    "content_sid",
    "content_variables",
)


class TemplateInvalid(ValueError):
    """Field → messages, as the admin's form would show them."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class TemplateExists(TemplateInvalid):
    """Another template has this slug on this channel."""


class TemplateInUse(Exception):
    """Something (a journey step…) still uses the template; `users` says what."""

    def __init__(self, users: list[str]) -> None:
        super().__init__(f"In use by: {'; '.join(users)}.")
        self.users = users


def _exists_error(template: Template) -> TemplateExists:
    message = f"A {template.channel} template with the slug “{template.slug}” exists."
    return TemplateExists({"slug": [message], "channel": [message]})


def template_validate(*, template: Template) -> None:
    """TemplateInvalid unless `template` passes what the admin's form checks: the model's
    field validators and `Template.clean` (Liquid under limits, channel rules; one function,
    messaging.rendering.template_errors, for the admin, the API and every save)."""
    duplicate = Template.objects.filter(slug=template.slug, channel=template.channel)
    if template.pk:
        duplicate = duplicate.exclude(pk=template.pk)
    try:
        template.full_clean(validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        errors = {
            ("__all__" if name == NON_FIELD_ERRORS else name): [str(m) for m in messages]
            for name, messages in exc.message_dict.items()
        }
        raise TemplateInvalid(errors) from None
    if template.slug and duplicate.exists():
        raise _exists_error(template)


def _save(template: Template) -> Template:
    template_validate(template=template)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:  # the same slug and channel, created concurrently
        raise _exists_error(template) from None
    return template


def template_create(*, slug: str, channel: str, data: dict[str, Any]) -> Template:
    """A new template; TemplateExists when (slug, channel) is taken, TemplateInvalid else."""
    fields = {name: data[name] for name in TEMPLATE_FIELDS if name in data}
    return _save(Template(slug=slug, channel=channel, **fields))


def template_update(*, template: Template, data: dict[str, Any], replace: bool) -> Template:
    """Change a template's fields (all of them with `replace`: the missing ones go back to
    their defaults). Slug and channel name the template and do not change. Nothing is
    written unless the result is valid."""
    for name in TEMPLATE_FIELDS:
        if name in data:
            setattr(template, name, data[name])
        elif replace:
            field = Template._meta.get_field(name)
            setattr(template, name, field.get_default())
    return _save(template)


def template_delete(*, template: Template) -> None:
    """Delete `template`; TemplateInUse (and nothing deleted) while anything uses it."""
    users = template_users(slug=template.slug, channel=template.channel)
    if users:
        raise TemplateInUse(users)
    template.delete()
