"""Contacts: upsert by external_id, list and filter, consent, export and erase."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.channels import Channel, normalize_phone

from .. import services
from ..models import ConsentChange, ConsentSource, ConsentStatus, Contact
from ..serializers import ContactFieldsInput, ContactOutput, StrictSerializer
from .common import NewestFirstPagination, paginated

CONTACT_EXAMPLE = OpenApiExample(
    "Upsert a contact",
    value={
        "first_name": "Ada",
        "phone": "+14155552671",
        "email": "ada@example.com",
        "timezone": "Europe/London",
        "attributes": {"plan": "pro"},
        "consent": {"sms": "subscribed"},
    },
    request_only=True,
)


class ContactUpsertInput(ContactFieldsInput):
    pass


def _get(external_id: str) -> Contact:
    return get_object_or_404(Contact.objects.prefetch_related("consents"), external_id=external_id)


class ContactListView(APIView):
    required_scopes = {"GET": "contacts:read"}

    @extend_schema(
        responses=paginated(ContactOutput),
        parameters=[
            OpenApiParameter("email", str),
            OpenApiParameter("phone", str, description="E.164 (also matches WhatsApp)"),
            OpenApiParameter(
                "attribute", str, many=True, description="key:value, e.g. plan:pro (repeatable)"
            ),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List contacts, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Contact.objects.filter(erased_at__isnull=True).prefetch_related("consents")
        if request.query_params.get("email"):
            qs = qs.filter(email__iexact=request.query_params["email"].strip())
        if request.query_params.get("phone"):
            try:
                phone = normalize_phone(request.query_params["phone"])
            except DjangoValidationError:
                raise exceptions.ValidationError({"phone": ["Not a valid phone number."]}) from None
            qs = qs.filter(phone=phone) | qs.filter(whatsapp=phone)
        for item in request.query_params.getlist("attribute"):
            key, sep, value = item.partition(":")
            if not sep or not key:
                raise exceptions.ValidationError({"attribute": ["Use key:value."]})
            qs = qs.filter(**{f"attributes__{key}": value})
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ContactOutput(page, many=True).data)


class ContactDetailView(APIView):
    required_scopes = {
        "GET": "contacts:read",
        "PUT": "contacts:write",
        "PATCH": "contacts:write",
        "DELETE": "contacts:write",
    }

    @extend_schema(responses=ContactOutput, summary="Read a contact")
    def get(self, request: Request, external_id: str) -> Response:
        return Response(ContactOutput(_get(external_id)).data)

    @extend_schema(
        request=ContactUpsertInput,
        responses={200: ContactOutput, 201: ContactOutput},
        examples=[CONTACT_EXAMPLE],
        summary="Create or update a contact",
    )
    def put(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id, create=True)

    @extend_schema(request=ContactUpsertInput, responses=ContactOutput, summary="Update a contact")
    def patch(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id, create=False)

    @extend_schema(
        responses={200: inline_serializer("ErasureResult", {"erased": serializers.DictField()})},
        summary="Erase a contact's personal data (GDPR)",
        description="Addresses, names, attributes, message bodies and inbound content are "
        "erased; anonymised touchpoints stay so statistics remain correct. The contact can "
        "never be messaged again.",
    )
    def delete(self, request: Request, external_id: str) -> Response:
        from ..privacy import contact_erase

        contact = _get(external_id)
        counts = contact_erase(contact=contact, actor=f"api:{request.auth.prefix}")
        return Response({"erased": counts})

    def _upsert(self, request: Request, external_id: str, *, create: bool) -> Response:
        if len(external_id) > 255:
            raise exceptions.ValidationError({"external_id": ["At most 255 characters."]})
        payload = ContactUpsertInput(data=request.data)
        payload.is_valid(raise_exception=True)
        if not create:
            _get(external_id)
        _, created = services.contact_upsert(external_id=external_id, data=payload.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ContactOutput(_get(external_id)).data, status=code)


class ConsentChangeOutput(serializers.ModelSerializer):
    class Meta:
        model = ConsentChange
        fields = ["channel", "status", "previous_status", "source", "note", "message", "changed_at"]


class ConsentInput(StrictSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=255)


class ConsentView(APIView):
    required_scopes = {"GET": "contacts:read", "POST": "contacts:write"}

    def _body(self, contact: Contact) -> dict:
        return {
            "consent": ContactOutput(contact).data["consent"],
            "history": ConsentChangeOutput(
                contact.consent_changes.order_by("-changed_at", "-id")[:200], many=True
            ).data,
        }

    @extend_schema(
        responses=inline_serializer(
            "ConsentState",
            {
                "consent": serializers.DictField(child=serializers.CharField()),
                "history": ConsentChangeOutput(many=True),
            },
        ),
        summary="A contact's consent per channel, with its history",
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(self._body(_get(external_id)))

    @extend_schema(
        request=ConsentInput,
        responses=inline_serializer(
            "ConsentStateAfterChange",
            {
                "consent": serializers.DictField(child=serializers.CharField()),
                "history": ConsentChangeOutput(many=True),
            },
        ),
        examples=[
            OpenApiExample(
                "Unsubscribe SMS",
                request_only=True,
                value={"channel": "sms", "status": "unsubscribed", "note": "asked on the phone"},
            )
        ],
        summary="Change consent on one channel (recorded with source api)",
    )
    def post(self, request: Request, external_id: str) -> Response:
        contact = _get(external_id)
        payload = ConsentInput(data=request.data)
        payload.is_valid(raise_exception=True)
        with transaction.atomic():
            services.consent_set(
                contact=contact,
                channel=payload.validated_data["channel"],
                status=payload.validated_data["status"],
                source=ConsentSource.API,
                note=payload.validated_data.get("note", ""),
            )
        return Response(self._body(_get(external_id)))


class ContactExportView(APIView):
    required_scopes = {"GET": "contacts:read"}

    @extend_schema(
        responses={
            200: inline_serializer(
                "ContactExport",
                {
                    "profile": serializers.DictField(),
                },
            )
        },
        summary="Everything stored about a contact (GDPR export)",
    )
    def get(self, request: Request, external_id: str) -> Response:
        from ..privacy import contact_export

        return Response(contact_export(contact=_get(external_id)))
