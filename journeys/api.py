"""Events and journeys API: ingest events (single and batch), list journeys, read stats."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api import Conflict, idempotency_key_from, resolve_contact
from messaging.serializers import ContactRefInput, StrictSerializer
from messaging.services import IdempotencyConflict, request_fingerprint

from . import services
from .models import Event, Journey
from .stats import journey_stats

BATCH_LIMIT = 1000


class EventInput(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,120}$", help_text="e.g. order.completed")
    contact = ContactRefInput()
    properties = serializers.DictField(required=False, default=dict)
    occurred_at = serializers.DateTimeField(required=False)
    idempotency_key = serializers.CharField(required=False, max_length=200)


class EventOutput(serializers.ModelSerializer):
    contact = serializers.SerializerMethodField()
    enrolled = serializers.SerializerMethodField()
    converted = serializers.SerializerMethodField()
    resumed = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "name",
            "contact",
            "properties",
            "occurred_at",
            "received_at",
            "enrolled",
            "converted",
            "resumed",
        ]

    def get_contact(self, event: Event) -> dict[str, Any]:
        return {"id": event.contact_id, "external_id": event.contact.external_id}

    def get_enrolled(self, event: Event) -> list[dict[str, Any]]:
        return event.result.get("enrolled", [])

    def get_converted(self, event: Event) -> list[int]:
        return event.result.get("converted", [])

    def get_resumed(self, event: Event) -> list[int]:
        return event.result.get("resumed", [])


def ingest(data: dict[str, Any], raw: Any, key: str | None, prefix: str) -> tuple[Event, bool]:
    namespaced = f"api:{prefix}:{key}" if key else None
    with transaction.atomic():
        contact = resolve_contact(data["contact"])
        return services.event_ingest(
            name=data["name"],
            contact=contact,
            properties=data.get("properties") or {},
            occurred_at=data.get("occurred_at"),
            idempotency_key=namespaced,
            fingerprint=request_fingerprint(raw),
        )


class EventCreateView(APIView):
    required_scopes = {"POST": "events:write"}

    @extend_schema(
        request=EventInput,
        responses={202: EventOutput, 200: EventOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        summary="Fire an event (enrolls the contact in matching journeys)",
    )
    def post(self, request: Request) -> Response:
        payload = EventInput(data=request.data)
        payload.is_valid(raise_exception=True)
        key = idempotency_key_from(request, payload.validated_data.get("idempotency_key"))
        try:
            event, created = ingest(payload.validated_data, request.data, key, request.auth.prefix)
        except IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        response = Response(
            EventOutput(event).data, status=status.HTTP_202_ACCEPTED if created else 200
        )
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class EventBatchInput(StrictSerializer):
    events = serializers.ListField(
        child=serializers.DictField(), max_length=BATCH_LIMIT, allow_empty=False
    )


class EventBatchView(APIView):
    required_scopes = {"POST": "events:write"}

    @extend_schema(
        request=EventBatchInput,
        responses={
            200: inline_serializer("EventBatchOutput", {"results": serializers.ListField()})
        },
        summary=f"Fire up to {BATCH_LIMIT} events; each gets its own result",
    )
    def post(self, request: Request) -> Response:
        batch = EventBatchInput(data=request.data)
        batch.is_valid(raise_exception=True)
        results = []
        for index, raw in enumerate(batch.validated_data["events"]):
            item = EventInput(data=raw)
            if not item.is_valid():
                results.append({"index": index, "status": 400, "errors": item.errors})
                continue
            key = item.validated_data.get("idempotency_key")
            try:
                event, created = ingest(item.validated_data, raw, key, request.auth.prefix)
            except IdempotencyConflict as exc:
                results.append({"index": index, "status": 409, "errors": {"detail": str(exc)}})
                continue
            except Exception as exc:  # one bad event must not sink the batch
                if isinstance(exc, exceptions.APIException):
                    results.append(
                        {"index": index, "status": exc.status_code, "errors": exc.detail}
                    )
                    continue
                raise
            results.append(
                {
                    "index": index,
                    "status": 202 if created else 200,
                    "event": EventOutput(event).data,
                }
            )
        return Response({"results": results})


class JourneyOutput(serializers.ModelSerializer):
    class Meta:
        model = Journey
        fields = [
            "slug",
            "name",
            "description",
            "status",
            "trigger_event",
            "trigger_filter",
            "entry_policy",
            "goal_event",
            "category",
            "version",
            "created_at",
            "updated_at",
        ]


class JourneyListView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(responses=JourneyOutput(many=True), summary="List journeys")
    def get(self, request: Request) -> Response:
        journeys = Journey.objects.order_by("name")[:500]
        return Response({"results": JourneyOutput(journeys, many=True).data})


class JourneyDetailView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(responses=JourneyOutput, summary="Read a journey")
    def get(self, request: Request, slug: str) -> Response:
        return Response(JourneyOutput(get_object_or_404(Journey, slug=slug)).data)


class JourneyStatsView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(
        responses=inline_serializer("JourneyStats", {"journey": serializers.CharField()}),
        summary="Per-journey and per-step statistics, with NPS",
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(journey_stats(get_object_or_404(Journey, slug=slug)))
