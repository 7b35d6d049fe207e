"""Webhook subscriptions API (scope `webhooks:manage`). Views are thin: validate, call a service."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import audit_diff, audit_record, audit_snapshot
from messaging.api import Conflict
from messaging.serializers import StrictSerializer

from . import services
from .models import (
    WEBHOOK_URL_VALIDATORS,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

SCOPE = "webhooks:manage"


# --- Shapes ------------------------------------------------------------------------------


class SubscriptionInput(StrictSerializer):
    url = serializers.CharField(
        max_length=2000,
        validators=WEBHOOK_URL_VALIDATORS,
        help_text="Where events are POSTed; http:// or https:// only, to a public address "
        "(checked again, after DNS, at every delivery); no user:password@.",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=255)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        max_length=len(EventType.values),
    )
    is_active = serializers.BooleanField(
        required=False,
        help_text="false stops deliveries; true re-enables a disabled subscription and "
        "clears its failure count and reason.",
    )


class SubscriptionOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "created_at",
            "updated_at",
        ]


class SubscriptionCreatedOutput(SubscriptionOutput):
    secret = serializers.CharField(
        help_text="The Standard Webhooks signing secret (whsec_…). Shown only in this response."
    )

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "secret"]


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "duration_ms", "response_body", "error"]


class DeliveryOutput(serializers.ModelSerializer):
    attempt_log = AttemptOutput(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "created_at",
            "finished_at",
            "payload",
            "attempt_log",
        ]


class EmptyInput(StrictSerializer):
    pass


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


# --- Examples ----------------------------------------------------------------------------

CREATE_EXAMPLE = OpenApiExample(
    "Subscribe to replies and opt-outs",
    value={
        "url": "https://crm.example.com/hooks/touchline",
        "description": "CRM sync",
        "event_types": ["message.replied", "contact.unsubscribed", "survey.answered"],
    },
    request_only=True,
)
SUBSCRIPTION = {
    "id": 3,
    "url": "https://crm.example.com/hooks/touchline",
    "description": "CRM sync",
    "event_types": ["message.replied", "contact.unsubscribed", "survey.answered"],
    "is_active": True,
    "disabled_reason": "",
    "disabled_at": None,
    "consecutive_failures": 0,
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}
CREATED_EXAMPLE = OpenApiExample(
    "Created (the secret is shown only now)",
    value={**SUBSCRIPTION, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw2Ke3j9VwDbU="},
    response_only=True,
    status_codes=["201"],
)
SUBSCRIPTION_EXAMPLE = OpenApiExample("A subscription", value=SUBSCRIPTION, response_only=True)
# drf-spectacular wraps list examples in the paginator's envelope itself.
LIST_EXAMPLE = OpenApiExample("A page of subscriptions", value=SUBSCRIPTION, response_only=True)
DISABLED_EXAMPLE = OpenApiExample(
    "Disabled after failures",
    value={
        **SUBSCRIPTION,
        "is_active": False,
        "disabled_reason": "disabled after 15 consecutive failed deliveries; "
        "last: HTTP 500 Internal Server Error",
        "disabled_at": "2026-11-24T08:00:00Z",
        "consecutive_failures": 15,
    },
    response_only=True,
)
PATCH_EXAMPLE = OpenApiExample(
    "Re-enable and change the event types",
    value={"is_active": True, "event_types": ["message.replied"]},
    request_only=True,
)
DELIVERY = {
    "id": 812,
    "webhook_id": "msg_2KWPBgLlAfxdpx2AI54pPJ85",
    "event_type": "message.replied",
    "status": "succeeded",
    "attempts": 2,
    "next_attempt_at": None,
    "last_status_code": 200,
    "created_at": "2026-11-23T10:00:00Z",
    "finished_at": "2026-11-23T10:00:11Z",
    "payload": {
        "type": "message.replied",
        "timestamp": "2026-11-23T10:00:00Z",
        "data": {
            "message": {
                "id": "0d6f7a4e-5b8c-4c1e-9a43-2f1e0b9d8c7a",
                "channel": "sms",
                "body": "Yes please!",
                "in_reply_to": "6b0e4b8e-1f5a-4c0e-8d4b-4f1a2c3d4e5f",
            },
            "contact": {"id": 7, "external_id": "cust-42"},
        },
    },
    "attempt_log": [
        {
            "attempted_at": "2026-11-23T10:00:00Z",
            "status_code": 503,
            "duration_ms": 41,
            "response_body": "upstream unavailable",
            "error": "",
        },
        {
            "attempted_at": "2026-11-23T10:00:11Z",
            "status_code": 200,
            "duration_ms": 23,
            "response_body": "ok",
            "error": "",
        },
    ],
}
DELIVERIES_EXAMPLE = OpenApiExample(
    "Recent deliveries with their attempts", value=DELIVERY, response_only=True
)
TEST_EXAMPLE = OpenApiExample(
    "A queued test ping",
    value={
        **DELIVERY,
        "event_type": "webhook.test",
        "status": "pending",
        "attempts": 0,
        "last_status_code": None,
        "finished_at": None,
        "payload": {
            "type": "webhook.test",
            "timestamp": "2026-11-23T10:00:00Z",
            "data": {"subscription": {"id": 3}, "message": "A test delivery from Touchline."},
        },
        "attempt_log": [],
    },
    response_only=True,
    status_codes=["202"],
)
EMPTY_EXAMPLE = OpenApiExample("No body", value={}, request_only=True)


# --- Views -------------------------------------------------------------------------------


def _subscription(subscription_id: int) -> WebhookSubscription:
    return get_object_or_404(WebhookSubscription, pk=subscription_id)


class WebhookListCreateView(APIView):
    required_scopes = {"GET": SCOPE, "POST": SCOPE}
    pagination_class = NewestFirst  # read by drf-spectacular to document the paged shape

    @extend_schema(
        responses=SubscriptionOutput(many=True),
        examples=[LIST_EXAMPLE],
        summary="List webhook subscriptions, newest first",
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(WebhookSubscription.objects.all(), request, view=self)
        return paginator.get_paginated_response(SubscriptionOutput(page, many=True).data)

    @extend_schema(
        request=SubscriptionInput,
        responses={201: SubscriptionCreatedOutput},
        examples=[CREATE_EXAMPLE, CREATED_EXAMPLE],
        summary="Subscribe an endpoint to events (the signing secret is returned once)",
    )
    def post(self, request: Request) -> Response:
        payload = SubscriptionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        with transaction.atomic():
            subscription = services.subscription_create(
                **payload.validated_data, created_by_key=request.auth
            )
            audit_record(
                actor=request.auth,
                action="create",
                target=subscription,
                after=audit_snapshot(subscription),
                request=request,
            )
        data = SubscriptionCreatedOutput(subscription).data
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    required_scopes = {"GET": SCOPE, "PATCH": SCOPE, "DELETE": SCOPE}

    @extend_schema(
        responses=SubscriptionOutput,
        examples=[SUBSCRIPTION_EXAMPLE, DISABLED_EXAMPLE],
        summary="Read a webhook subscription",
    )
    def get(self, request: Request, subscription_id: int) -> Response:
        return Response(SubscriptionOutput(_subscription(subscription_id)).data)

    @extend_schema(
        request=SubscriptionInput(partial=True),
        responses=SubscriptionOutput,
        examples=[PATCH_EXAMPLE, SUBSCRIPTION_EXAMPLE],
        summary="Change a webhook subscription (is_active: true re-enables it)",
    )
    def patch(self, request: Request, subscription_id: int) -> Response:
        payload = SubscriptionInput(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        subscription = _subscription(subscription_id)
        before = audit_snapshot(subscription)
        with transaction.atomic():
            subscription = services.subscription_update(
                subscription=subscription, data=payload.validated_data
            )
            after = audit_snapshot(subscription)
            if audit_diff(before, after):
                audit_record(
                    actor=request.auth,
                    action="change",
                    target=subscription,
                    before=before,
                    after=after,
                    request=request,
                )
        return Response(SubscriptionOutput(subscription).data)

    @extend_schema(
        request=None,
        responses={204: None},
        examples=[OpenApiExample("Deleted", value=None, response_only=True, status_codes=["204"])],
        summary="Delete a webhook subscription and its delivery history",
    )
    def delete(self, request: Request, subscription_id: int) -> Response:
        subscription = _subscription(subscription_id)
        with transaction.atomic():
            audit_record(
                actor=request.auth,
                action="delete",
                target=subscription,
                before=audit_snapshot(subscription),
                request=request,
            )
            subscription.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveriesView(APIView):
    required_scopes = {"GET": SCOPE}
    pagination_class = NewestFirst

    @extend_schema(
        responses=DeliveryOutput(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=WebhookDelivery.Status.values),
        ],
        examples=[DELIVERIES_EXAMPLE],
        summary="A subscription's recent deliveries, newest first, with every attempt",
    )
    def get(self, request: Request, subscription_id: int) -> Response:
        subscription = _subscription(subscription_id)
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in WebhookDelivery.Status.values:
            raise serializers.ValidationError(
                {"status": [f"Choose one of: {', '.join(WebhookDelivery.Status.values)}."]}
            )
        rows: QuerySet[WebhookDelivery] = subscription.deliveries.prefetch_related(
            Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("attempted_at", "id"))
        )
        if wanted:
            rows = rows.filter(status=wanted)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DeliveryOutput(page, many=True).data)


class WebhookTestView(APIView):
    required_scopes = {"POST": SCOPE}

    @extend_schema(
        request=EmptyInput,
        responses={202: DeliveryOutput},
        examples=[EMPTY_EXAMPLE, TEST_EXAMPLE],
        summary="Send a webhook.test ping to this endpoint",
    )
    def post(self, request: Request, subscription_id: int) -> Response:
        EmptyInput(data=request.data or {}).is_valid(raise_exception=True)
        subscription = _subscription(subscription_id)
        if not subscription.is_active:
            raise Conflict(
                "This subscription is disabled; re-enable it (PATCH is_active: true) first."
            )
        with transaction.atomic():
            delivery = services.ping_send(subscription=subscription)
        delivery.refresh_from_db()
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
