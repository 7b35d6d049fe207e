"""Templates: CRUD by (slug, channel), and rendering a saved or a draft template.

A template is named by its slug and channel, as the messages API names it (`template` +
`channel`): `/api/v1/templates/{slug}/{channel}/`. Writes are checked by the admin's own
validation (messaging.services.templates) and recorded in the audit log with the API key as
the actor; deleting a template a journey still sends answers 409 naming the users.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import audit_diff, audit_record, audit_snapshot
from channels_app.channels import Channel

from .. import services
from ..models import Contact, Template
from ..rendering import (
    CONTENT_SID_MESSAGE,
    CONTENT_SID_RE,
    RenderedContent,
    TemplateRenderError,
    render_content,
    template_errors,
)
from ..serializers import StrictSerializer
from ..sms import SMS_MAX_CHARACTERS, sms_segments
from .common import Conflict, NewestFirstPagination, choice_param, paginated

READ, WRITE = "templates:read", "templates:write"
MAX_VARIABLES = 100
# The rule Template.clean applies, also in the schema (as a pattern) for clients and fuzzers.
CONTENT_SID = RegexValidator(rf"^({CONTENT_SID_RE.pattern})?$", CONTENT_SID_MESSAGE)


class TemplateOutput(serializers.ModelSerializer):
    content_variables = serializers.DictField(
        help_text="WhatsApp only: Content template variable → Liquid."
    )

    class Meta:
        model = Template
        fields = [
            "slug",
            "channel",
            "name",
            "description",
            "subject",
            "body",
            "html_body",
            "content_sid",
            "content_variables",
            "created_at",
            "updated_at",
        ]


class TemplateFieldsInput(StrictSerializer):
    """The fields a template's slug and channel do not fix. Liquid in subject, body,
    html_body and content_variables; checked as the admin checks them."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    subject = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Email only (required)."
    )
    body = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    html_body = serializers.CharField(
        required=False, allow_blank=True, max_length=200000, help_text="Email only."
    )
    content_sid = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        validators=[CONTENT_SID],
        help_text="WhatsApp only: an approved Twilio Content template, HX + 32 hex digits.",
    )
    content_variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=2000),
        required=False,
        help_text='WhatsApp only: variable → Liquid, e.g. {"1": "{{ contact.first_name }}"}.',
    )

    def validate_content_variables(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_VARIABLES:
            raise serializers.ValidationError(f"At most {MAX_VARIABLES} variables.")
        long = sorted(key for key in value if len(key) > 64)
        if long:
            raise serializers.ValidationError("Variable names are at most 64 characters.")
        return value


class TemplateCreateInput(TemplateFieldsInput):
    slug = serializers.SlugField(max_length=100)
    channel = serializers.ChoiceField(choices=Channel.choices)


class TemplateUpdateInput(TemplateFieldsInput):
    """Slug and channel may be sent back as read, but name the template: they cannot change
    (create the new one, then delete the old one)."""

    slug = serializers.CharField(required=False, max_length=100)
    channel = serializers.CharField(required=False, max_length=16)


class RenderContactInput(StrictSerializer):
    """An example contact (nothing is looked up or stored); when omitted, Ada Lovelace with
    an email address, a phone and a WhatsApp number."""

    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    email = serializers.CharField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=32)
    whatsapp = serializers.CharField(required=False, allow_blank=True, max_length=32)
    locale = serializers.CharField(required=False, allow_blank=True, max_length=35)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    attributes = serializers.DictField(required=False)


class TemplateRenderInput(StrictSerializer):
    context = serializers.DictField(required=False, help_text="Available as {{ event.… }}.")
    contact = RenderContactInput(required=False, help_text="Available as {{ contact.… }}.")


class TemplateDraftRenderInput(TemplateRenderInput):
    """An unsaved template's fields, rendered as they would be sent."""

    channel = serializers.ChoiceField(choices=Channel.choices)
    subject = serializers.CharField(required=False, allow_blank=True, max_length=500)
    body = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    html_body = serializers.CharField(required=False, allow_blank=True, max_length=200000)
    content_sid = serializers.CharField(
        required=False, allow_blank=True, max_length=64, validators=[CONTENT_SID]
    )
    content_variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=2000), required=False
    )


class SmsOutput(serializers.Serializer):
    encoding = serializers.CharField()
    characters = serializers.IntegerField()
    segments = serializers.IntegerField()
    per_segment = serializers.IntegerField()


class RenderOutput(serializers.Serializer):
    channel = serializers.CharField()
    subject = serializers.CharField()
    body = serializers.CharField()
    html_body = serializers.CharField()
    content_sid = serializers.CharField()
    content_variables = serializers.DictField(child=serializers.CharField())
    sms = SmsOutput(allow_null=True, help_text="SMS only: encoding and parts, as billed.")
    warnings = serializers.ListField(child=serializers.CharField())


TEMPLATE_EXAMPLE = OpenApiExample(
    "An SMS template",
    value={
        "slug": "order-thanks",
        "channel": "sms",
        "name": "Order thanks",
        "body": "Hi {{ contact.first_name }}, thanks for order {{ event.order_id }}!",
    },
    request_only=True,
)
RENDER_EXAMPLE = OpenApiExample(
    "Render for an example order",
    value={"context": {"order_id": "1001"}, "contact": {"first_name": "Ada"}},
    request_only=True,
)
CONFLICT = inline_serializer(
    "TemplateConflictResponse",
    {
        "type": serializers.CharField(),
        "errors": serializers.ListField(child=serializers.DictField()),
    },
)
# Examples name a template the blueprints install (`manage.py install_blueprints`).
SLUG = OpenApiParameter(
    "slug",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[-a-zA-Z0-9_]+$",
    examples=[OpenApiExample("A blueprint's template", value="order-thanks")],
)
CHANNEL = OpenApiParameter(
    "channel",
    str,
    OpenApiParameter.PATH,
    enum=Channel.values,
    examples=[OpenApiExample("SMS", value="sms")],
)
PUT_EXAMPLE = OpenApiExample(
    "Replace an SMS template",
    value={
        "name": "Order thanks",
        "body": "Thanks {{ contact.first_name }}! Order {{ event.order_id }} is on its way.",
    },
    request_only=True,
)
PATCH_EXAMPLE = OpenApiExample(
    "Change the body",
    value={"body": "Thank you, {{ contact.first_name }}!"},
    request_only=True,
)
DRAFT_EXAMPLE = OpenApiExample(
    "An email draft",
    value={
        "channel": "email",
        "subject": "Order {{ event.order_id }}",
        "html_body": "<p>Hi {{ contact.first_name }}</p>",
        "context": {"order_id": "1001"},
    },
    request_only=True,
)


def _get(slug: str, channel: str) -> Template:
    if channel not in Channel.values:
        raise Http404
    return get_object_or_404(Template, slug=slug, channel=channel)


class TemplateConflict(exceptions.ValidationError):
    """A duplicate (slug, channel): 409, with the errors on the fields."""

    status_code = status.HTTP_409_CONFLICT


def _refusal(exc: services.TemplateInvalid) -> exceptions.APIException:
    if isinstance(exc, services.TemplateExists):
        return TemplateConflict(exc.errors)
    return exceptions.ValidationError(exc.errors)


def _audited_save(request: Request, save, before: dict[str, Any] | None) -> Template:
    """Run `save` (a service call) and record it, in one transaction."""
    with transaction.atomic():
        try:
            template = save()
        except services.TemplateInvalid as exc:
            raise _refusal(exc) from None
        after = audit_snapshot(template)
        if before is None or audit_diff(before, after):
            audit_record(
                actor=request.auth,
                action="create" if before is None else "change",
                target=template,
                before=before,
                after=after,
                request=request,
            )
    return template


class TemplateListView(APIView):
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        responses=paginated(TemplateOutput),
        parameters=[
            OpenApiParameter("slug", str, description="Every channel's version of this slug"),
            OpenApiParameter("channel", str, enum=Channel.values),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List templates, newest first",
        operation_id="templates_list",
    )
    def get(self, request: Request) -> Response:
        qs = Template.objects.all()
        if request.query_params.get("slug"):
            qs = qs.filter(slug=request.query_params["slug"])
        channel = choice_param(request, "channel", Channel.values)
        if channel:
            qs = qs.filter(channel=channel)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(TemplateOutput(page, many=True).data)

    @extend_schema(
        request=TemplateCreateInput,
        responses={201: TemplateOutput, 409: CONFLICT},
        examples=[TEMPLATE_EXAMPLE],
        summary="Create a template for one channel",
        description="Refused with 400 and field-level errors (Liquid syntax, render limits, "
        "channel rules); 409 when the slug already has a template on this channel.",
    )
    def post(self, request: Request) -> Response:
        payload = TemplateCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        slug, channel = data.pop("slug"), data.pop("channel")
        template = _audited_save(
            request,
            lambda: services.template_create(slug=slug, channel=channel, data=data),
            None,
        )
        return Response(TemplateOutput(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    required_scopes = {"GET": READ, "PUT": WRITE, "PATCH": WRITE, "DELETE": WRITE}

    @extend_schema(parameters=[SLUG, CHANNEL], responses=TemplateOutput, summary="Read a template")
    def get(self, request: Request, slug: str, channel: str) -> Response:
        return Response(TemplateOutput(_get(slug, channel)).data)

    @extend_schema(
        parameters=[SLUG, CHANNEL],
        request=TemplateUpdateInput,
        responses={200: TemplateOutput, 201: TemplateOutput, 409: CONFLICT},
        examples=[PUT_EXAMPLE],
        summary="Create or replace a template",
        description="Fields left out go back to their defaults. 201 when it was created.",
    )
    def put(self, request: Request, slug: str, channel: str) -> Response:
        return self._write(request, slug, channel, replace=True)

    @extend_schema(
        parameters=[SLUG, CHANNEL],
        request=TemplateUpdateInput(partial=True),
        responses=TemplateOutput,
        examples=[PATCH_EXAMPLE],
        summary="Change some of a template's fields",
    )
    def patch(self, request: Request, slug: str, channel: str) -> Response:
        return self._write(request, slug, channel, replace=False)

    @extend_schema(
        parameters=[SLUG, CHANNEL],
        request=None,
        responses={204: None, 409: CONFLICT},
        summary="Delete a template",
        description="Refused with 409, naming them, while a journey (not archived) may send it.",
    )
    def delete(self, request: Request, slug: str, channel: str) -> Response:
        with transaction.atomic():
            template = _get(slug, channel)
            before = audit_snapshot(template)
            try:
                services.template_delete(template=template)
            except services.TemplateInUse as exc:
                raise Conflict([f"In use by {user}." for user in exc.users]) from None
            audit_record(
                actor=request.auth,
                action="delete",
                target=template,
                before=before,
                request=request,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _write(self, request: Request, slug: str, channel: str, *, replace: bool) -> Response:
        if channel not in Channel.values:
            raise Http404
        payload = TemplateUpdateInput(data=request.data, partial=not replace)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        fixed = {"slug": slug, "channel": channel}
        errors = {
            name: [f"Fixed by the URL ({fixed[name]}): create a new template to change it."]
            for name in fixed
            if name in data and data.pop(name) != fixed[name]
        }
        if errors:
            raise exceptions.ValidationError(errors)
        template = Template.objects.filter(slug=slug, channel=channel).first()
        if template is None:
            if not replace:
                raise Http404
            template = _audited_save(
                request,
                lambda: services.template_create(slug=slug, channel=channel, data=data),
                None,
            )
            return Response(TemplateOutput(template).data, status=status.HTTP_201_CREATED)
        template = _audited_save(
            request,
            lambda: services.template_update(template=template, data=data, replace=replace),
            audit_snapshot(template),
        )
        return Response(TemplateOutput(template).data)


# --- Rendering ---------------------------------------------------------------------------


def _example_contact(data: dict[str, Any] | None) -> Contact:
    """The request's example contact, unsaved; the staff preview's sample when none."""
    if data is None:
        return Contact(
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            phone="+14155552671",
            whatsapp="+14155552671",
            timezone="Europe/London",
        )
    return Contact(**data)


def _rendered(channel: str, contact: Contact, content: RenderedContent) -> dict[str, Any]:
    warnings = []
    if not contact.address_for(channel):
        warnings.append(f"The contact has no {channel} address: a send would be refused.")
    sms = None
    if channel == Channel.SMS:
        info = sms_segments(content.body)
        sms = {
            "encoding": info.encoding,
            "characters": info.characters,
            "segments": info.segments,
            "per_segment": info.per_segment,
        }
        if not content.body.strip():
            warnings.append("The rendered body is empty: a send would be refused.")
        elif len(content.body) > SMS_MAX_CHARACTERS:
            warnings.append(
                f"The rendered body is over {SMS_MAX_CHARACTERS} characters: "
                "a send would be refused."
            )
    return RenderOutput(
        {
            "channel": channel,
            "subject": content.subject,
            "body": content.body,
            "html_body": content.html_body,
            "content_sid": content.content_sid,
            "content_variables": content.content_variables,
            "sms": sms,
            "warnings": warnings,
        }
    ).data


def _render(channel: str, fields: dict[str, Any], request_data: dict[str, Any]) -> Response:
    contact = _example_contact(request_data.get("contact"))
    try:
        content = render_content(contact=contact, event=request_data.get("context"), **fields)
    except TemplateRenderError as exc:
        raise exceptions.ValidationError(exc.errors) from None
    return Response(_rendered(channel, contact, content))


RENDER_DESCRIPTION = (
    "Renders under the template limits, as a send would, for an example contact (nothing "
    "is looked up or stored, nothing is sent). 400 with field-level errors when the "
    "template cannot be rendered; `warnings` says what would stop a send."
)


class TemplateRenderView(APIView):
    required_scopes = {"POST": READ}

    @extend_schema(
        parameters=[SLUG, CHANNEL],
        request=TemplateRenderInput,
        responses=RenderOutput,
        examples=[RENDER_EXAMPLE],
        summary="Render a saved template with a context",
        operation_id="templates_render",
        description=RENDER_DESCRIPTION,
    )
    def post(self, request: Request, slug: str, channel: str) -> Response:
        template = _get(slug, channel)
        payload = TemplateRenderInput(data=request.data)
        payload.is_valid(raise_exception=True)
        fields = {
            name: getattr(template, name)
            for name in ("subject", "body", "html_body", "content_sid", "content_variables")
        }
        return _render(channel, fields, payload.validated_data)


class TemplateDraftRenderView(APIView):
    required_scopes = {"POST": READ}

    @extend_schema(
        request=TemplateDraftRenderInput,
        responses=RenderOutput,
        examples=[DRAFT_EXAMPLE],
        summary="Check and render an unsaved template",
        operation_id="templates_render_draft",
        description="The checks a save makes (Liquid, limits, channel rules), then a render. "
        + RENDER_DESCRIPTION,
    )
    def post(self, request: Request) -> Response:
        payload = TemplateDraftRenderInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        fields = {
            name: data.get(name, "") for name in ("subject", "body", "html_body", "content_sid")
        }
        fields["content_variables"] = data.get("content_variables", {})
        errors = template_errors(Template(channel=data["channel"], **fields))
        if errors:
            raise exceptions.ValidationError(errors)
        return _render(data["channel"], fields, data)
