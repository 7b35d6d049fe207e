"""REST API for contacts, messages and touchpoints. Views are thin: validate, call a service."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.channels import Channel

from . import selectors, services
from .models import Contact, Message, Template, Touchpoint
from .serializers import ContactFieldsInput, ContactOutput, ContactRefInput, StrictSerializer


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "Conflict."


def idempotency_key_from(request: Request, body_key: str | None) -> str | None:
    header = request.headers.get("Idempotency-Key", "").strip()
    if header and body_key and header != body_key:
        raise exceptions.ValidationError(
            {"idempotency_key": ["Differs from the Idempotency-Key header."]}
        )
    key = header or body_key or None
    if key and len(key) > 200:
        raise exceptions.ValidationError({"idempotency_key": ["At most 200 characters."]})
    return key


def resolve_contact(data: dict[str, Any], *, channel: str = "") -> Contact:
    """Upsert by external_id; else find by address (the channel's first, then any) or create."""
    data = dict(data)
    external_id = data.pop("external_id", None)
    if external_id:
        contact, _ = services.contact_upsert(external_id=external_id, data=data)
        return contact
    preferred = {"email": "email", "sms": "phone", "whatsapp": "whatsapp"}.get(channel)
    fields = [f for f in (preferred, "email", "phone", "whatsapp") if f]
    lookup_channel = {"email": "email", "phone": "sms", "whatsapp": "whatsapp"}
    for field in dict.fromkeys(fields):
        if data.get(field):
            contact = selectors.contact_by_address(
                channel=lookup_channel[field], address=data[field]
            )
            if contact is not None:
                return contact
    contact, _ = services.contact_upsert(external_id=None, data=data)
    return contact


class MessageOutput(serializers.ModelSerializer):
    contact = serializers.SerializerMethodField()
    template = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    to = serializers.CharField(source="to_address")
    from_ = serializers.CharField(source="from_address")

    class Meta:
        model = Message
        fields = [
            "id",
            "direction",
            "channel",
            "status",
            "contact",
            "template",
            "to",
            "from_",
            "subject",
            "body",
            "content_sid",
            "content_variables",
            "provider",
            "provider_message_id",
            "error_code",
            "error_message",
            "attempts",
            "idempotency_key",
            "in_reply_to",
            "created_at",
            "queued_at",
            "sending_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "skipped_at",
            "received_at",
        ]

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # `from` is a Python keyword
        return fields

    def get_contact(self, message: Message) -> dict[str, Any]:
        return {"id": message.contact_id, "external_id": message.contact.external_id}


class MessageCreateInput(StrictSerializer):
    contact = ContactRefInput()
    channel = serializers.ChoiceField(choices=Channel.choices)
    template = serializers.SlugField(required=False, max_length=100)
    subject = serializers.CharField(required=False, allow_blank=True, max_length=500)
    body = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    html_body = serializers.CharField(required=False, allow_blank=True, max_length=200000)
    context = serializers.DictField(required=False, help_text="Available as {{ event.… }}.")
    idempotency_key = serializers.CharField(required=False, max_length=200)


class MessageListCreateView(APIView):
    required_scopes = {"POST": "messages:write"}

    @extend_schema(
        request=MessageCreateInput,
        responses={202: MessageOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        summary="Send a message",
    )
    def post(self, request: Request) -> Response:
        payload = MessageCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        key = idempotency_key_from(request, data.get("idempotency_key"))
        template = None
        if data.get("template"):
            template = Template.objects.filter(
                slug=data["template"], channel=data["channel"]
            ).first()
            if template is None:
                raise exceptions.ValidationError(
                    {"template": [f"No {data['channel']} template with slug {data['template']!r}."]}
                )
        namespaced_key = f"api:{request.auth.prefix}:{key}" if key else None
        try:
            with transaction.atomic():
                contact = resolve_contact(data["contact"], channel=data["channel"])
                message, _ = services.message_create(
                    contact=contact,
                    channel=data["channel"],
                    template=template,
                    body=data.get("body", ""),
                    subject=data.get("subject", ""),
                    html_body=data.get("html_body", ""),
                    context=data.get("context") or {},
                    idempotency_key=namespaced_key,
                    fingerprint=services.request_fingerprint(request.data),
                    source="api",
                )
        except services.MessageRequestError as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        except services.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        message = selectors.message_detail(message_id=message.pk)
        return Response(MessageOutput(message).data, status=status.HTTP_202_ACCEPTED)


class MessageDetailView(APIView):
    required_scopes = {"GET": "messages:read"}

    @extend_schema(responses=MessageOutput, summary="Read a message")
    def get(self, request: Request, message_id: uuid.UUID) -> Response:
        message = selectors.message_detail(message_id=message_id)
        if message is None:
            raise exceptions.NotFound("No message with this id.")
        return Response(MessageOutput(message).data)


class ContactUpsertInput(ContactFieldsInput):
    pass


class ContactDetailView(APIView):
    required_scopes = {"GET": "contacts:read", "PUT": "contacts:write", "PATCH": "contacts:write"}

    def _get(self, external_id: str) -> Contact:
        return get_object_or_404(
            Contact.objects.prefetch_related("consents"), external_id=external_id
        )

    @extend_schema(responses=ContactOutput, summary="Read a contact")
    def get(self, request: Request, external_id: str) -> Response:
        return Response(ContactOutput(self._get(external_id)).data)

    @extend_schema(
        request=ContactUpsertInput,
        responses={200: ContactOutput, 201: ContactOutput},
        summary="Create or update a contact",
    )
    def put(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id, create=True)

    @extend_schema(request=ContactUpsertInput, responses=ContactOutput, summary="Update a contact")
    def patch(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id, create=False)

    def _upsert(self, request: Request, external_id: str, *, create: bool) -> Response:
        if len(external_id) > 255:
            raise exceptions.ValidationError({"external_id": ["At most 255 characters."]})
        payload = ContactUpsertInput(data=request.data)
        payload.is_valid(raise_exception=True)
        if not create:
            self._get(external_id)
        _, created = services.contact_upsert(external_id=external_id, data=payload.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ContactOutput(self._get(external_id)).data, status=code)


class TouchpointOutput(serializers.ModelSerializer):
    class Meta:
        model = Touchpoint
        fields = ["id", "kind", "channel", "direction", "message", "occurred_at", "data"]


class TimelinePagination(CursorPagination):
    ordering = ("-occurred_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ContactTouchpointsView(APIView):
    required_scopes = {"GET": "touchpoints:read"}

    @extend_schema(
        responses=TouchpointOutput(many=True),
        parameters=[
            OpenApiParameter("channel", str, enum=Channel.values),
            OpenApiParameter("kind", str),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="A contact's touchpoint timeline, newest first",
    )
    def get(self, request: Request, external_id: str) -> Response:
        contact = get_object_or_404(Contact, external_id=external_id)
        channel = request.query_params.get("channel", "")
        if channel and channel not in Channel.values:
            raise exceptions.ValidationError({"channel": [f"Choose one of {Channel.values}."]})
        qs = selectors.contact_timeline(
            contact=contact, channel=channel, kind=request.query_params.get("kind", "")
        )
        paginator = TimelinePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(TouchpointOutput(page, many=True).data)
