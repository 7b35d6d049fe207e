"""Segments API: CRUD by slug, a live count and the member list."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api.common import Conflict, NewestFirstPagination, paginated
from messaging.models import Contact
from messaging.serializers import StrictSerializer

from . import services
from .definition import DefinitionError
from .models import Segment

SEGMENT_EXAMPLE = OpenApiExample(
    "Jakarta customers who bought twice in 90 days",
    value={
        "name": "Jakarta repeat buyers",
        "slug": "jakarta-repeat",
        "kind": "dynamic",
        "definition": {
            "all": [
                {"field": "timezone", "op": "eq", "value": "Asia/Jakarta"},
                {"event": "order.completed", "count": {"gte": 2}, "within_days": 90},
                {"reachable": "sms"},
            ]
        },
    },
    request_only=True,
)
DEFINITION_HELP = "Conditions in all / any / not groups (docs/SEGMENTS.md)."


class SegmentOutput(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "kind",
            "definition",
            "member_count",
            "last_computed_at",
            "created_at",
            "updated_at",
        ]


class SegmentCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    kind = serializers.ChoiceField(choices=Segment.Kind.choices, default=Segment.Kind.DYNAMIC)
    definition = serializers.JSONField(required=False, help_text=DEFINITION_HELP)


class SegmentUpdateInput(StrictSerializer):
    """Slug and kind are fixed once a segment exists."""

    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    definition = serializers.JSONField(required=False, help_text=DEFINITION_HELP)


class SegmentCountOutput(serializers.Serializer):
    count = serializers.IntegerField()
    counted_at = serializers.DateTimeField()


class MemberOutput(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "external_id"]


class MembersPagination(CursorPagination):
    ordering = ("id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def _definition_errors(exc: DefinitionError) -> exceptions.ValidationError:
    """Each error at its path inside the definition: `definition.all[0].op`."""
    return exceptions.ValidationError(
        {f"definition.{path}" if path else "definition": msgs for path, msgs in exc.errors.items()}
    )


def _get(slug: str) -> Segment:
    return get_object_or_404(Segment, slug=slug)


class SegmentListView(APIView):
    required_scopes = {"GET": "segments:read", "POST": "segments:write"}

    @extend_schema(
        responses=paginated(SegmentOutput),
        parameters=[
            OpenApiParameter("kind", str, enum=Segment.Kind.values),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List segments, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Segment.objects.all()
        kind = request.query_params.get("kind", "")
        if kind:
            if kind not in Segment.Kind.values:
                raise exceptions.ValidationError(
                    {"kind": [f"Choose one of: {', '.join(Segment.Kind.values)}."]}
                )
            qs = qs.filter(kind=kind)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(SegmentOutput(page, many=True).data)

    @extend_schema(
        request=SegmentCreateInput,
        responses={201: SegmentOutput},
        examples=[SEGMENT_EXAMPLE],
        summary="Create a segment",
    )
    def post(self, request: Request) -> Response:
        payload = SegmentCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if Segment.objects.filter(slug=data["slug"]).exists():
            raise exceptions.ValidationError({"slug": ["A segment with this slug exists."]})
        try:
            with transaction.atomic():
                segment = services.segment_create(
                    name=data["name"],
                    slug=data["slug"],
                    kind=data["kind"],
                    definition=data.get("definition"),
                    description=data.get("description", ""),
                )
        except DefinitionError as exc:
            raise _definition_errors(exc) from None
        except IntegrityError:  # created concurrently
            raise exceptions.ValidationError(
                {"slug": ["A segment with this slug exists."]}
            ) from None
        _recompute_after_commit(segment)
        return Response(SegmentOutput(segment).data, status=status.HTTP_201_CREATED)


def _recompute_after_commit(segment: Segment) -> None:
    """A dynamic segment follows a new definition now, not at the next periodic recompute
    (as saving it in the admin does)."""
    if segment.kind != Segment.Kind.DYNAMIC:
        return
    from .tasks import recompute_segment

    pk = segment.pk
    transaction.on_commit(lambda: recompute_segment.delay(pk), robust=True)


class SegmentDetailView(APIView):
    required_scopes = {
        "GET": "segments:read",
        "PATCH": "segments:write",
        "DELETE": "segments:write",
    }

    @extend_schema(responses=SegmentOutput, summary="Read a segment")
    def get(self, request: Request, slug: str) -> Response:
        return Response(SegmentOutput(_get(slug)).data)

    @extend_schema(
        request=SegmentUpdateInput,
        responses=SegmentOutput,
        summary="Change a segment's name, description or definition",
    )
    def patch(self, request: Request, slug: str) -> Response:
        segment = _get(slug)
        payload = SegmentUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            segment = services.segment_update(segment=segment, data=payload.validated_data)
        except DefinitionError as exc:
            raise _definition_errors(exc) from None
        if "definition" in payload.validated_data:
            _recompute_after_commit(segment)
        return Response(SegmentOutput(segment).data)

    @extend_schema(
        responses={204: None},
        summary="Delete a segment",
        description="Refused with 409 while another segment's definition includes it.",
    )
    def delete(self, request: Request, slug: str) -> Response:
        try:
            services.segment_delete(segment=_get(slug))
        except services.SegmentInUse as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentCountView(APIView):
    required_scopes = {"GET": "segments:read"}

    @extend_schema(
        responses=SegmentCountOutput,
        summary="Count a segment's contacts now",
        description="Evaluated live from the definition (static segments: their list).",
    )
    def get(self, request: Request, slug: str) -> Response:
        segment, now = _get(slug), timezone.now()
        count = services.segment_count(segment=segment, now=now)
        return Response(SegmentCountOutput({"count": count, "counted_at": now}).data)


class SegmentMembersView(APIView):
    required_scopes = {"GET": "segments:read"}

    @extend_schema(
        responses=paginated(MemberOutput),
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("page_size", int)],
        summary="List a segment's contacts now, by id",
    )
    def get(self, request: Request, slug: str) -> Response:
        members = services.segment_members(segment=_get(slug)).only("id", "external_id")
        paginator = MembersPagination()
        page = paginator.paginate_queryset(members, request, view=self)
        return paginator.get_paginated_response(MemberOutput(page, many=True).data)
