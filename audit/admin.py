"""The audit log in the admin: read-only for everyone, filterable, exported as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .admin_mixins import ReadOnlyAdminMixin
from .models import AuditEntry
from .services import Target, audit_record

EXPORT_PERMISSION = "audit.export_auditentry"
CSV_COLUMNS = (
    "at",
    "actor_kind",
    "actor_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object",
    "changes",
    "details",
    "method",
    "path",
    "ip",
)
# A cell a spreadsheet would read as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
MAX_ACTOR_CHOICES = 200


def csv_cell(value: Any) -> str:
    """Text for one CSV cell, with formulas neutralised by a leading apostrophe."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.startswith(_FORMULA_START) or text.lstrip().startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_row(entry: AuditEntry) -> list[str]:
    context = entry.context or {}
    values = (
        entry.at.isoformat(),
        entry.actor_kind,
        entry.actor_id,
        entry.actor_label,
        entry.action,
        entry.object_type,
        entry.object_id,
        entry.object_label,
        entry.changes or {},
        context.get("details") or {},
        context.get("method", ""),
        context.get("path", ""),
        context.get("ip", ""),
    )
    return [csv_cell(v) for v in values]


class _Echo:
    """A file-like object whose write returns the line, for a streamed csv.writer."""

    def write(self, value: str) -> str:
        return value


class ActorFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor"

    def lookups(self, request, model_admin):
        rows = (
            AuditEntry.objects.order_by("actor_kind", "actor_label")
            .values_list("actor_kind", "actor_id", "actor_label")
            .distinct()[:MAX_ACTOR_CHOICES]
        )
        return [(f"{kind}:{actor_id}", f"{label} ({kind})") for kind, actor_id, label in rows]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        kind, _, actor_id = self.value().partition(":")
        return queryset.filter(actor_kind=kind, actor_id=actor_id)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    audit_skip = True  # not wrapped by AuditedAdminMixin: nothing here writes
    list_display = ("at", "actor_label", "action", "object_type", "object_label", "short_changes")
    list_filter = ("action", "object_type", ActorFilter, "actor_kind", "at")
    search_fields = ("=object_id", "object_label", "actor_label")
    date_hierarchy = "at"
    show_full_result_count = False
    fields = (
        "at",
        ("actor_kind", "actor_id", "actor_label"),
        "action",
        ("object_type", "object_id", "object_label"),
        "changes_table",
        "context_json",
    )
    readonly_fields = (
        "at",
        "actor_kind",
        "actor_id",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "object_label",
        "changes_table",
        "context_json",
    )
    actions = None
    change_list_template = "admin/audit/auditentry/change_list.html"

    @admin.display(description="Changes")
    def short_changes(self, obj: AuditEntry) -> str:
        return ", ".join(sorted(obj.changes or {}))[:120]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(EXPORT_PERMISSION)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="audit_auditentry_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The entries the change list shows with the same filters, newest first, streamed."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown or invalid filter in the query string.")
        entries = changelist.queryset.order_by("-at", "-id")
        filters = {key: request.GET.getlist(key) for key in request.GET}
        audit_record(
            actor=request.user,
            action="export",
            target=Target("audit.auditentry", "", "audit log (CSV)"),
            request=request,
            details={"filters": filters},
        )

        def rows() -> Iterator[str]:
            writer = csv.writer(_Echo())
            yield writer.writerow(CSV_COLUMNS)
            for entry in entries.iterator(chunk_size=1000):
                yield writer.writerow(csv_row(entry))

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        return response

    @admin.display(description="Changes (before → after)")
    def changes_table(self, obj: AuditEntry) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            (
                (
                    field,
                    json.dumps(before, ensure_ascii=False),
                    json.dumps(after, ensure_ascii=False),
                )
                for field, (before, after) in sorted((obj.changes or {}).items())
            ),
        )
        return format_html(
            "<table><thead><tr><th>Field</th><th>Before</th><th>After</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Request and details")
    def context_json(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.context, indent=2, ensure_ascii=False))
