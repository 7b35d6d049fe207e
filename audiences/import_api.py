"""Imports API: upload a CSV (multipart), validate, run, read the status and the error
report; and a segment's contacts as CSV (streamed)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from audit.services import Target, audit_record
from messaging.api.common import Conflict, NewestFirstPagination, paginated
from messaging.input_rules import JsonInputError, check_json
from messaging.serializers import StrictSerializer

from . import export, import_tasks
from .import_models import ContactImport
from .imports import ImportInvalid, ImportStateError, import_create
from .models import Segment

MAPPING_HELP = (
    'JSON object {column: target}; a target is a contact field ("email"), '
    '"attributes.<name>[:string|number|boolean|date]", "consent.<channel>" or "ignore". '
    "Columns left out are mapped by their header (docs/IMPORT.md)."
)


class CsvRenderer(BaseRenderer):
    """Lets a client ask for text/csv; errors on these endpoints are still JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


class ImportUploadInput(StrictSerializer):
    file = serializers.FileField(help_text="The CSV, UTF-8, comma-separated, a header row.")
    mapping = serializers.CharField(required=False, allow_blank=True, help_text=MAPPING_HELP)
    consent_source = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Where the consent was given (“checkout opt-in, 2026-10”): required when a "
        "column maps to consent; written to the consent ledger.",
    )

    def validate_mapping(self, value: str) -> dict[str, Any]:
        if not value.strip():
            return {}
        try:
            mapping = json.loads(value)
        except (ValueError, RecursionError):
            raise serializers.ValidationError("Not JSON (or nested too deep).") from None
        try:
            check_json(mapping, max_depth=settings.API_MAX_JSON_DEPTH)
        except JsonInputError as exc:
            if exc.path:  # at the column: {"mapping": {"<column>": [...]}}
                raise serializers.ValidationError({exc.path[0]: [exc.message]}) from None
            raise serializers.ValidationError(exc.message) from None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise serializers.ValidationError("A JSON object of strings: {column: target}.")
        return mapping


class ImportOutput(serializers.ModelSerializer):
    progress = serializers.FloatField(help_text="Fraction of rows done, 0 to 1.")
    error_report_url = serializers.SerializerMethodField()

    class Meta:
        model = ContactImport
        fields = [
            "id",
            "status",
            "original_name",
            "columns",
            "mapping",
            "consent_source",
            "total_rows",
            "processed_rows",
            "progress",
            "created_count",
            "updated_count",
            "unchanged_count",
            "error_count",
            "consent_changes",
            "validation",
            "failure",
            "error_report_url",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_error_report_url(self, obj: ContactImport) -> str:
        return reverse("api-import-errors", args=[obj.pk], request=self.context.get("request"))


def _invalid(exc: ImportInvalid) -> exceptions.ValidationError:
    """Column errors at `mapping.<column>`; the file's at `file`."""
    errors: dict[str, list[str]] = {}
    for key, messages in exc.errors.items():
        if key in ("file", "consent_source", "mapping"):
            name = key
        elif key == "":
            name = "mapping"
        else:
            name = f"mapping.{key}"
        errors.setdefault(name, []).extend(messages)
    return exceptions.ValidationError(errors)


def _output(request: Request, contact_import: ContactImport, code: int = 200) -> Response:
    return Response(ImportOutput(contact_import, context={"request": request}).data, status=code)


class ImportListView(APIView):
    required_scopes = {"GET": "imports:read", "POST": "imports:write"}
    parser_classes = [MultiPartParser]

    @extend_schema(
        responses=paginated(ImportOutput),
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("page_size", int)],
        summary="List contact imports, newest first",
    )
    def get(self, request: Request) -> Response:
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(ContactImport.objects.all(), request, view=self)
        data = ImportOutput(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=ImportUploadInput,
        responses={201: ImportOutput},
        summary="Upload a CSV of contacts",
        description="The header is checked against the mapping at once (400 with errors at "
        "`mapping.<column>`); then validate, then run (docs/IMPORT.md).",
    )
    def post(self, request: Request) -> Response:
        payload = ImportUploadInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            contact_import = import_create(
                file=data["file"],
                mapping=data.get("mapping") or {},
                consent_source=data.get("consent_source", ""),
                api_key_prefix=getattr(request.auth, "prefix", ""),
            )
        except ImportInvalid as exc:
            raise _invalid(exc) from None
        audit_record(actor=None, action="import_upload", target=contact_import, request=request)
        return _output(request, contact_import, status.HTTP_201_CREATED)


class ImportDetailView(APIView):
    required_scopes = {"GET": "imports:read"}

    @extend_schema(responses=ImportOutput, summary="An import's status, progress and counts")
    def get(self, request: Request, pk: int) -> Response:
        return _output(request, get_object_or_404(ContactImport, pk=pk))


class ImportValidateView(APIView):
    required_scopes = {"POST": "imports:write"}

    @extend_schema(
        request=None,
        responses={202: ImportOutput},
        summary="Start the validation pass",
        description="A dry run over the whole file in a worker: `validation` then holds what "
        "would be created / updated and the first errors. 409 once the import has run.",
    )
    def post(self, request: Request, pk: int) -> Response:
        contact_import = get_object_or_404(ContactImport, pk=pk)
        try:
            with transaction.atomic():
                import_tasks.queue_validation(contact_import)
                audit_record(
                    actor=None, action="import_validate", target=contact_import, request=request
                )
        except ImportStateError as exc:
            raise Conflict(str(exc)) from None
        return _output(request, contact_import, status.HTTP_202_ACCEPTED)


class ImportRunView(APIView):
    required_scopes = {"POST": "imports:write"}

    @extend_schema(
        request=None,
        responses={202: ImportOutput},
        summary="Run a validated import in the background",
        description="409 unless the import is `validated`. Poll the import for progress.",
    )
    def post(self, request: Request, pk: int) -> Response:
        contact_import = get_object_or_404(ContactImport, pk=pk)
        try:
            with transaction.atomic():
                import_tasks.start_run(contact_import)
                audit_record(
                    actor=None, action="import_run", target=contact_import, request=request
                )
        except ImportStateError as exc:
            raise Conflict(str(exc)) from None
        return _output(request, contact_import, status.HTTP_202_ACCEPTED)


class ImportErrorsView(APIView):
    required_scopes = {"GET": "imports:read"}
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
        summary="The error report (CSV: line, column, message)",
    )
    def get(self, request: Request, pk: int):
        contact_import = get_object_or_404(ContactImport, pk=pk)
        return export.import_error_report(contact_import)


class SegmentExportView(APIView):
    """Personal data in bulk: the key needs contacts:read as well, and each export is
    recorded in the audit log."""

    required_scopes = {"GET": "segments:read"}
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
        summary="Export a segment's contacts as CSV (streamed)",
        description="Needs the scopes segments:read and contacts:read. Columns: "
        + ", ".join(export.EXPORT_COLUMNS)
        + ".",
    )
    def get(self, request: Request, slug: str):
        scopes = set(getattr(request.auth, "scopes", None) or [])
        if not scopes & {"contacts:read", "*"}:
            raise exceptions.PermissionDenied("This API key lacks the scope 'contacts:read'.")
        segment = get_object_or_404(Segment, slug=slug)
        audit_record(
            actor=None,
            action="export",
            target=Target("audiences.segment", str(segment.pk), f"{segment} (contacts CSV)"),
            request=request,
        )
        return export.segment_export_response(segment=segment)
