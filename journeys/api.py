"""Events and journeys API: ingest events (single and batch), list journeys, read stats."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.db.models import F
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api import Conflict, idempotency_key_from, resolve_contact
from messaging.api.common import NewestFirstPagination, filter_time_range, paginated
from messaging.conversion import CONVERSION_FIELDS
from messaging.serializers import ContactRefInput, StrictSerializer
from messaging.services import IdempotencyConflict, idempotent_replay, request_fingerprint

from . import services
from .models import Event, Journey, SurveyResponse
from .selectors import event_name_unused, unmatched_event_warning
from .stats import journey_stats

BATCH_LIMIT = 1000
RESERVED_EVENT_PREFIX = "segment."


class EventInput(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,120}$", help_text="e.g. order.completed")
    contact = ContactRefInput()
    properties = serializers.DictField(required=False, default=dict)
    occurred_at = serializers.DateTimeField(required=False)
    idempotency_key = serializers.CharField(required=False, max_length=200)

    def validate_name(self, value: str) -> str:
        # `segment.entered` / `segment.left` start "enters segment" journeys: only membership
        # changes make them (journeys/segment_triggers.py), never a backend.
        if value.lower().startswith(RESERVED_EVENT_PREFIX):
            raise serializers.ValidationError(
                f"Event names starting with {RESERVED_EVENT_PREFIX!r} are Touchline's own."
            )
        return value


class EventOutput(serializers.ModelSerializer):
    """An event and what applying it did. The API stores an event and answers 202 at once; a
    worker applies it moments later: until then `processed_at` is null and the three lists
    are empty. A replay of the key (200) shows the event as it is now."""

    contact = serializers.SerializerMethodField()
    enrolled = serializers.SerializerMethodField()
    converted = serializers.SerializerMethodField()
    exited = serializers.SerializerMethodField(
        help_text="Enrollments this event ended through their journey's exit condition."
    )
    resumed = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField(
        help_text="Why the event may do nothing, e.g. no active journey uses its name."
    )
    processed_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When a worker matched the event to journeys; null until then.",
    )

    class Meta:
        model = Event
        fields = [
            "id",
            "name",
            "contact",
            "properties",
            "occurred_at",
            "received_at",
            "processed_at",
            "enrolled",
            "converted",
            "exited",
            "resumed",
            "error",
            "warnings",
        ]

    def get_contact(self, event: Event) -> dict[str, Any]:
        return {"id": event.contact_id, "external_id": event.contact.external_id}

    def get_enrolled(self, event: Event) -> list[dict[str, Any]]:
        return event.result.get("enrolled", [])

    def get_converted(self, event: Event) -> list[int]:
        return event.result.get("converted", [])

    def get_exited(self, event: Event) -> list[int]:
        return event.result.get("exited", [])

    def get_resumed(self, event: Event) -> list[int]:
        return event.result.get("resumed", [])

    def get_warnings(self, event: Event) -> list[str]:
        return event_warnings(event)

    def get_error(self, event: Event) -> str:
        """Why applying the event failed (it is not retried); empty otherwise."""
        return event.result.get("error", "")


_datetime = serializers.DateTimeField()


def event_warnings(event: Event) -> list[str]:
    """What applying the event found (once a worker has); until then, whether any active
    journey uses its name at all."""
    if event.processed_at is not None:
        return (event.result or {}).get("warnings", [])
    if event.source == Event.Source.API and event_name_unused(event.name):
        return [unmatched_event_warning(event.name)]
    return []


def event_output(event: Event) -> dict[str, Any]:
    """EventOutput's data, built directly: the event endpoints answer every request with it,
    and a ModelSerializer costs more than the rest of a replay (the schema still comes from
    EventOutput; tests/journeys/test_event_accept.py checks that the two agree)."""
    result = event.result or {}
    return {
        "id": event.pk,
        "name": event.name,
        "contact": {
            "id": event.contact_id,
            "external_id": getattr(event, "contact_external_id", None) or event.contact.external_id,
        },
        "properties": event.properties,
        "occurred_at": _datetime.to_representation(event.occurred_at),
        "received_at": _datetime.to_representation(event.received_at),
        "processed_at": (
            _datetime.to_representation(event.processed_at) if event.processed_at else None
        ),
        "enrolled": result.get("enrolled", []),
        "converted": result.get("converted", []),
        "exited": result.get("exited", []),
        "resumed": result.get("resumed", []),
        "error": result.get("error", ""),
        "warnings": event_warnings(event),
    }


def stored_event(key: str | None, prefix: str) -> Event | None:
    """The event stored under this client key (namespaced by the API key), if any."""
    if not key:
        return None
    # The contact's external id is all the answer needs of the contact: a joined column,
    # not a Contact instance (half the ORM cost of this, the only query of a replay).
    qs = (
        Event.objects.filter(idempotency_key=f"api:{prefix}:{key}")
        .order_by()
        .annotate(contact_external_id=F("contact__external_id"))
    )
    return next(iter(qs[:1]), None)


def ingest(
    data: dict[str, Any],
    raw: Any,
    key: str | None,
    prefix: str,
    *,
    existing: Event | None | bool = True,
) -> tuple[Event, bool]:
    """Store the event (upserting its contact) and answer; a worker applies it after commit.
    `existing`: the stored event of this key if the caller looked it up already (None: not
    found), True to look it up here."""
    fingerprint = request_fingerprint(raw)
    if existing is True:
        existing = stored_event(key, prefix)
    if existing is not None:
        # A replay answers from the first request and touches nothing, not even the contact.
        return idempotent_replay(existing, fingerprint), False
    idempotency_key = f"api:{prefix}:{key}" if key else None
    # The key is claimed first, then the contact upserted and the event stored, committed
    # together: a request that loses the race for its key finds the winner's event once it
    # holds the key, and answers (a replay or a 409) before touching anything. Requests for
    # one key queue on the key, never on each other's contact row, so they cannot deadlock
    # (the event's foreign key is checked at COMMIT, which with a contact held FOR UPDATE by
    # a request waiting on this event's unique key did: tests/faults test_concurrent_events).
    with transaction.atomic():
        if idempotency_key:
            services.event_key_claim(idempotency_key)
            existing = stored_event(key, prefix)
            if existing is not None:
                return idempotent_replay(existing, fingerprint), False
        contact = resolve_contact(data["contact"])
        return services.event_accept(
            name=data["name"],
            contact=contact,
            properties=data.get("properties") or {},
            occurred_at=data.get("occurred_at"),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )


def _exact_replay(request: Request) -> tuple[str | None, Event | None, Event | None]:
    """Before validation: (the key as sent, its stored event, that event if this request's
    body is the one it was stored from). An exact replay was valid the first time, so it is
    answered without validating again; anything else goes through validation (a different
    body then gets its 400 or 409 as before)."""
    data = request.data
    if not isinstance(data, dict):
        return None, None, None
    header = request.headers.get("Idempotency-Key", "").strip()
    body_key = data.get("idempotency_key")
    if body_key is not None and (not isinstance(body_key, str) or (header and header != body_key)):
        return None, None, None
    key = header or body_key
    if not key or len(key) > 200 or "\x00" in key:  # validation answers these with a 400
        return None, None, None
    existing = stored_event(key, request.auth.prefix)
    if existing is not None and existing.request_fingerprint == request_fingerprint(data):
        return key, existing, existing
    return key, existing, None


class EventDetailView(APIView):
    required_scopes = {"GET": "events:read"}

    @extend_schema(
        responses={200: EventOutput},
        summary="An event and what applying it did (processed_at null until a worker has)",
    )
    def get(self, request: Request, pk: int) -> Response:
        event = (
            Event.objects.filter(pk=pk)
            .order_by()
            .annotate(contact_external_id=F("contact__external_id"))
            .first()
        )
        if event is None:
            raise exceptions.NotFound("No event has this id.")
        return Response(event_output(event))


class EventCreateView(APIView):
    required_scopes = {"POST": "events:write"}

    @extend_schema(
        request=EventInput,
        responses={202: EventOutput, 200: EventOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[
            OpenApiExample(
                "An order completes",
                request_only=True,
                value={
                    "name": "order.completed",
                    "contact": {"external_id": "cust-42", "phone": "+14155552671"},
                    "properties": {"order_id": "1001", "total": 49.9},
                },
            ),
            OpenApiExample(
                "Accepted",
                response_only=True,
                status_codes=["202"],
                value={
                    "id": 31,
                    "name": "order.completed",
                    "contact": {"id": 7, "external_id": "cust-42"},
                    "properties": {"order_id": "1001", "total": 49.9},
                    "occurred_at": "2026-11-23T10:00:00Z",
                    "received_at": "2026-11-23T10:00:00Z",
                    "processed_at": None,
                    "enrolled": [],
                    "converted": [],
                    "resumed": [],
                },
            ),
        ],
        summary="Fire an event (stored at once; matched to journeys moments later)",
        description=(
            "202: the event is stored (its contact upserted) and will be matched to journeys "
            "by a worker within moments; `processed_at` is null until then. 200 with "
            "`Idempotent-Replayed: true`: the key was seen, the answer shows the event as it "
            "is now (with `enrolled`, `converted`, `resumed` once processed). 409: the key "
            "was used with a different body."
        ),
    )
    def post(self, request: Request) -> Response:
        looked_up, existing, replay = _exact_replay(request)
        if replay is not None:
            event, created = replay, False
        else:
            payload = EventInput(data=request.data)
            payload.is_valid(raise_exception=True)
            key = idempotency_key_from(request, payload.validated_data.get("idempotency_key"))
            try:
                event, created = ingest(
                    payload.validated_data,
                    request.data,
                    key,
                    request.auth.prefix,
                    existing=existing if key == looked_up else True,
                )
            except IdempotencyConflict as exc:
                raise Conflict(str(exc)) from exc
        response = Response(
            event_output(event), status=status.HTTP_202_ACCEPTED if created else 200
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
        summary=f"Fire up to {BATCH_LIMIT} events; each gets its own result (as for one event)",
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
                    "event": event_output(event),
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
            "entry_key",
            "goal_event",
            "goal_match",
            "exit_event",
            "exit_match",
            "category",
            "holdout_percent",
            *CONVERSION_FIELDS,
            "version",
            "created_at",
            "updated_at",
        ]


class JourneyListView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(
        responses=paginated(JourneyOutput),
        parameters=[
            OpenApiParameter("status", str, enum=Journey.Status.values),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List journeys (every version), newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Journey.objects.all()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Journey.Status.values:
                raise exceptions.ValidationError({"status": ["Unknown status."]})
            qs = qs.filter(status=wanted)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(JourneyOutput(page, many=True).data)


def current_journey(slug: str) -> Journey:
    """The live version of a slug, else its newest version."""
    journey = (
        Journey.objects.filter(slug=slug)
        .order_by(
            # active first, then the newest version
            models.Case(models.When(status=Journey.Status.ACTIVE, then=0), default=1),
            "-version",
        )
        .first()
    )
    if journey is None:
        raise exceptions.NotFound("No journey with this slug.")
    return journey


class JourneyDetailView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(responses=JourneyOutput, summary="Read a journey")
    def get(self, request: Request, slug: str) -> Response:
        return Response(JourneyOutput(current_journey(slug)).data)


class JourneyStatsView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(
        responses=inline_serializer("JourneyStats", {"journey": serializers.CharField()}),
        summary="Per-journey and per-step statistics, with NPS",
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(journey_stats(current_journey(slug)))


class SurveyResponseOutput(serializers.ModelSerializer):
    journey = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    step = serializers.SlugRelatedField(slug_field="key", read_only=True)
    contact = serializers.SerializerMethodField()

    class Meta:
        model = SurveyResponse
        fields = [
            "id",
            "journey",
            "step",
            "contact",
            "status",
            "score",
            "nps_category",
            "choice",
            "raw_answer",
            "attempts",
            "answered_at",
        ]

    def get_contact(self, response: SurveyResponse) -> dict[str, Any]:
        return {"id": response.contact_id, "external_id": response.contact.external_id}


class SurveyAnswerPagination(NewestFirstPagination):
    ordering = ("-answered_at", "-id")


class SurveyResponseListView(APIView):
    required_scopes = {"GET": "surveys:read"}

    @extend_schema(
        responses=paginated(SurveyResponseOutput),
        parameters=[
            OpenApiParameter("journey", str, description="Journey slug"),
            OpenApiParameter("since", str, description="ISO-8601, inclusive"),
            OpenApiParameter("until", str, description="ISO-8601, exclusive"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="Survey answers, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = SurveyResponse.objects.select_related("journey", "step", "contact")
        if request.query_params.get("journey"):
            qs = qs.filter(journey__slug=request.query_params["journey"])
        qs = filter_time_range(qs, request, "answered_at")
        paginator = SurveyAnswerPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(SurveyResponseOutput(page, many=True).data)
