"""Touchpoints: a contact's timeline and the filterable log."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.channels import Channel

from .. import selectors
from ..models import Contact, Touchpoint
from .common import TimelinePagination, choice_param, filter_time_range, paginated


class TouchpointOutput(serializers.ModelSerializer):
    contact = serializers.SerializerMethodField()

    class Meta:
        model = Touchpoint
        fields = ["id", "contact", "kind", "channel", "direction", "message", "occurred_at", "data"]

    def get_contact(self, tp: Touchpoint) -> dict:
        return {"id": tp.contact_id, "external_id": tp.contact.external_id}


PAGING = [OpenApiParameter("cursor", str), OpenApiParameter("page_size", int)]


class ContactTouchpointsView(APIView):
    required_scopes = {"GET": "touchpoints:read"}

    @extend_schema(
        responses=paginated(TouchpointOutput),
        parameters=[
            OpenApiParameter("channel", str, enum=Channel.values),
            OpenApiParameter("kind", str),
            *PAGING,
        ],
        summary="A contact's touchpoint timeline, newest first",
    )
    def get(self, request: Request, external_id: str) -> Response:
        contact = get_object_or_404(Contact, external_id=external_id)
        channel = choice_param(request, "channel", list(Channel.values))
        qs = selectors.contact_timeline(
            contact=contact, channel=channel, kind=request.query_params.get("kind", "")
        ).select_related("contact")
        paginator = TimelinePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(TouchpointOutput(page, many=True).data)


class TouchpointListView(APIView):
    required_scopes = {"GET": "touchpoints:read"}

    @extend_schema(
        responses=paginated(TouchpointOutput),
        parameters=[
            OpenApiParameter("contact", str, description="The contact's external_id"),
            OpenApiParameter("channel", str, enum=Channel.values),
            OpenApiParameter("kind", str),
            OpenApiParameter("journey", str, description="A journey slug"),
            OpenApiParameter("since", str, description="ISO-8601, inclusive"),
            OpenApiParameter("until", str, description="ISO-8601, exclusive"),
            *PAGING,
        ],
        summary="Touchpoints across contacts, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Touchpoint.objects.select_related("contact")
        if request.query_params.get("contact"):
            qs = qs.filter(contact__external_id=request.query_params["contact"])
        channel = choice_param(request, "channel", list(Channel.values))
        if channel:
            qs = qs.filter(channel=channel)
        if request.query_params.get("kind"):
            qs = qs.filter(kind=request.query_params["kind"])
        if request.query_params.get("journey"):
            qs = qs.filter(data__journey=request.query_params["journey"])
        qs = filter_time_range(qs, request, "occurred_at")
        paginator = TimelinePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(TouchpointOutput(page, many=True).data)
