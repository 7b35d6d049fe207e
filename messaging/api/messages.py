"""Messages: send one, read one, list them."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.channels import Channel

from .. import selectors, services
from ..models import Direction, Message, Template
from ..serializers import ContactRefInput, StrictSerializer
from ..status import MessageStatus
from .common import (
    Conflict,
    NewestFirstPagination,
    choice_param,
    idempotency_key_from,
    paginated,
    resolve_contact,
)


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


SEND_EXAMPLE = OpenApiExample(
    "SMS from a template",
    value={
        "contact": {"external_id": "cust-42", "phone": "+14155552671", "first_name": "Ada"},
        "channel": "sms",
        "template": "order-thanks",
        "context": {"order_id": "1001"},
    },
    request_only=True,
)
MESSAGE_EXAMPLE = OpenApiExample(
    "A queued message",
    value={
        "id": "0d6f7a4e-5b8c-4c1e-9a43-2f1e0b9d8c7a",
        "direction": "outbound",
        "channel": "sms",
        "status": "queued",
        "contact": {"id": 7, "external_id": "cust-42"},
        "template": "order-thanks",
        "to": "+14155552671",
        "from": "",
        "subject": "",
        "body": "Hi Ada, thank you for your order #1001!",
        "content_sid": "",
        "content_variables": {},
        "provider": "",
        "provider_message_id": "",
        "error_code": "",
        "error_message": "",
        "attempts": 0,
        "idempotency_key": None,
        "in_reply_to": None,
        "created_at": "2026-11-23T10:00:00Z",
        "queued_at": "2026-11-23T10:00:00Z",
        "sending_at": None,
        "sent_at": None,
        "delivered_at": None,
        "read_at": None,
        "failed_at": None,
        "skipped_at": None,
        "received_at": None,
    },
    response_only=True,
)


class MessageListCreateView(APIView):
    required_scopes = {"POST": "messages:write", "GET": "messages:read"}

    @extend_schema(
        request=MessageCreateInput,
        responses={202: MessageOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[SEND_EXAMPLE, MESSAGE_EXAMPLE],
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
        fingerprint = services.request_fingerprint(request.data)
        if namespaced_key:
            # A replay answers from the first request and touches nothing (not even the
            # contact: re-applying its fields could undo a STOP received since).
            existing = Message.objects.filter(idempotency_key=namespaced_key).first()
            if existing is not None:
                try:
                    services.idempotent_replay(existing, fingerprint)
                except services.IdempotencyConflict as exc:
                    raise Conflict(str(exc)) from exc
                message = selectors.message_detail(message_id=existing.pk)
                return Response(MessageOutput(message).data, status=status.HTTP_202_ACCEPTED)
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
                    fingerprint=fingerprint,
                    source="api",
                )
        except services.MessageRequestError as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        except services.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        message = selectors.message_detail(message_id=message.pk)
        return Response(MessageOutput(message).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=paginated(MessageOutput),
        parameters=[
            OpenApiParameter("contact", str, description="The contact's external_id"),
            OpenApiParameter("status", str, enum=MessageStatus.values),
            OpenApiParameter("channel", str, enum=Channel.values),
            OpenApiParameter("direction", str, enum=["outbound", "inbound"]),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List messages, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Message.objects.select_related("contact", "template")
        if request.query_params.get("contact"):
            qs = qs.filter(contact__external_id=request.query_params["contact"])
        for name, choices in (
            ("status", MessageStatus.values),
            ("channel", Channel.values),
            ("direction", [Direction.OUTBOUND, Direction.INBOUND]),
        ):
            value = choice_param(request, name, list(choices))
            if value:
                qs = qs.filter(**{name: value})
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(MessageOutput(page, many=True).data)


class MessageDetailView(APIView):
    required_scopes = {"GET": "messages:read"}

    @extend_schema(responses=MessageOutput, examples=[MESSAGE_EXAMPLE], summary="Read a message")
    def get(self, request: Request, message_id: uuid.UUID) -> Response:
        message = selectors.message_detail(message_id=message_id)
        if message is None:
            raise exceptions.NotFound("No message with this id.")
        return Response(MessageOutput(message).data)
