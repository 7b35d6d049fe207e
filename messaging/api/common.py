"""Shared pieces of the REST API: errors, idempotency keys, contact resolution, paging."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from .. import selectors, services
from ..models import Contact


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
                # The request's other fields and consent apply to the contact it found.
                return services.contact_update(contact=contact, data=data)
    contact, _ = services.contact_upsert(external_id=None, data=data)
    return contact


class NewestFirstPagination(CursorPagination):
    """Cursor pagination in a stable order (newest first, id breaking ties)."""

    ordering = ("-created_at", "-pk")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class TimelinePagination(NewestFirstPagination):
    ordering = ("-occurred_at", "-id")


def parse_time_param(request: Request, name: str) -> dt.datetime | None:
    """An ISO-8601 query parameter (naive means UTC); 400 with the field path if malformed."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise exceptions.ValidationError(
            {name: ["Use ISO-8601, e.g. 2026-11-23T10:00:00Z."]}
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def filter_time_range(queryset, request: Request, field: str):
    """Apply the `since` (inclusive) and `until` (exclusive) query parameters to `field`."""
    since, until = parse_time_param(request, "since"), parse_time_param(request, "until")
    if since:
        queryset = queryset.filter(**{f"{field}__gte": since})
    if until:
        queryset = queryset.filter(**{f"{field}__lt": until})
    return queryset


def choice_param(request: Request, name: str, choices: list[str]) -> str:
    value = request.query_params.get(name, "")
    if value and value not in choices:
        raise exceptions.ValidationError({name: [f"Choose one of: {', '.join(choices)}."]})
    return value


def paginated(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The OpenAPI shape of a cursor-paginated list of `serializer_class` items."""
    name = serializer_class.__name__.removesuffix("Output")
    return inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
