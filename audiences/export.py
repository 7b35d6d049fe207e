"""CSV out: a segment's contacts and an import's error report, streamed from a server-side
cursor in chunks (constant memory whatever the size)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import OuterRef, Subquery
from django.http import StreamingHttpResponse
from django.utils import timezone

from channels_app.channels import Channel
from messaging.models import Consent
from messaging.services.contacts import CONTACT_FIELDS

from . import services
from .import_models import ContactImport
from .imports import import_error_rows
from .models import Segment

# The contact's own fields, as the contacts API reads and writes them.
CONTACT_COLUMNS = ("id", "external_id", *CONTACT_FIELDS, "created_at")
EXPORT_COLUMNS = (
    *CONTACT_COLUMNS,
    *(f"consent.{channel}" for channel in Channel.values),
    "attributes",
)
CHUNK = 2000
# A cell a spreadsheet would run as a formula (OWASP "CSV injection"); a phone number
# ("+14155552671", "-") is left as it is.
_FORMULA_START = ("=", "@", "\t", "\r", "\n", "+", "-")
_NUMBERISH = re.compile(r"[+-][\d .()/-]*")


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    stripped = text.lstrip()
    if stripped.startswith(_FORMULA_START) and not _NUMBERISH.fullmatch(stripped):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_cell(v) for v in row])


def segment_export_rows(*, segment: Segment) -> Iterator[tuple]:
    """The segment's contacts now, by id, with each channel's consent: one query read
    through a server-side cursor."""
    consent = {
        f"consent_{channel}": Subquery(
            Consent.objects.filter(contact=OuterRef("pk"), channel=channel).values("status")[:1]
        )
        for channel in Channel.values
    }
    members = (
        services.segment_members(segment=segment)
        .order_by("id")
        .annotate(**consent)
        .values_list(*CONTACT_COLUMNS, *consent, "attributes")
    )
    return members.iterator(chunk_size=CHUNK)


def _download(lines: Iterator[str], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"  # personal data: no copies in caches
    return response


def segment_export_response(*, segment: Segment) -> StreamingHttpResponse:
    """The caller checks the permission and writes the audit entry."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return _download(
        _csv_lines(EXPORT_COLUMNS, segment_export_rows(segment=segment)),
        f"segment-{segment.slug}-{stamp}.csv",
    )


def import_error_report(contact_import: ContactImport) -> StreamingHttpResponse:
    return _download(
        _csv_lines(("line", "column", "message"), import_error_rows(contact_import=contact_import)),
        f"import-{contact_import.pk}-errors.csv",
    )
