"""Contact imports in the admin (upload, mapping, validate, run with a progress bar, error
report) and, on segments, CSV export (its own permission) and static lists from a CSV.
Imported by audiences/admin.py with one line."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.services import Target, audit_record

from . import export, import_tasks
from .admin import SegmentAdmin
from .import_models import ContactImport
from .imports import (
    ImportInvalid,
    ImportStateError,
    import_change_mapping,
    import_check,
    import_create,
    import_delete,
)
from .imports.reader import FileError, count_rows, read_header
from .models import Segment
from .static_lists import StaticListError, static_list_apply

RUN_PERMISSION = "audiences.add_contactimport"
EXPORT_PERMISSION = "audiences.export_contacts"


def _bounded_upload(upload: Any) -> Any:
    """The admin's uploads have the API's limit (messaging.middleware limits /api/ only)."""
    limit = settings.IMPORT_MAX_UPLOAD_BYTES
    if upload is not None and upload.size > limit:
        raise forms.ValidationError(
            f"The file is {upload.size:,} bytes; at most {limit:,} bytes (IMPORT_MAX_UPLOAD_BYTES)."
        )
    return upload


def _form_errors(form: forms.Form, exc: ImportInvalid) -> None:
    for key, msgs in exc.errors.items():
        field = key if key in ("file", "consent_source") else "mapping"
        prefix = "" if field != "mapping" or key in ("", "mapping") else f"{key}: "
        for message in msgs:
            form.add_error(field, f"{prefix}{message}")


class ContactImportForm(forms.ModelForm):
    class Meta:
        model = ContactImport
        fields = ["file", "mapping", "consent_source"]
        widgets = {"mapping": forms.Textarea(attrs={"rows": 6, "cols": 80})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "mapping" in self.fields:
            self.fields["mapping"].required = False
        if self.instance.pk:
            self.fields.pop("file", None)

    def clean_file(self):
        return _bounded_upload(self.cleaned_data.get("file"))

    def clean(self):
        cleaned = super().clean()
        if self.errors or "mapping" not in self.fields:
            return cleaned  # (a started import's page: nothing editable)
        mapping = cleaned.get("mapping") or {}
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            self.add_error("mapping", "A JSON object of strings: {column: target}.")
            return cleaned
        if self.instance.pk:
            columns = self.instance.columns
        else:
            upload = cleaned.get("file")
            try:
                upload.seek(0)
                columns = read_header(upload)
                # The whole file, streamed: a bad byte or row far down is a form error
                # naming its line, not a failure when the import is created.
                upload.seek(0)
                count_rows(upload)
                upload.seek(0)
            except FileError as exc:
                self.add_error("file", str(exc))
                return cleaned
        try:
            import_check(
                columns=columns, mapping=mapping, consent_source=cleaned.get("consent_source", "")
            )
        except ImportInvalid as exc:
            _form_errors(self, exc)
        return cleaned


@admin.register(ContactImport)
class ContactImportAdmin(admin.ModelAdmin):
    form = ContactImportForm
    change_form_template = "admin/audiences/contactimport/change_form.html"
    list_display = (
        "id",
        "original_name",
        "status",
        "progress_percent",
        "created_count",
        "updated_count",
        "error_count",
        "uploaded_by",
        "created_at",
    )
    list_filter = ("status",)
    list_select_related = ("uploaded_by",)
    readonly_fields = (
        "status",
        "original_name",
        "columns",
        "progress_percent",
        "validation_summary",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "error_count",
        "consent_changes",
        "failure",
        "uploaded_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    def get_fields(self, request: HttpRequest, obj: ContactImport | None = None):
        if obj is None:
            return ["file", "mapping", "consent_source"]
        return ["mapping", "consent_source", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: ContactImport | None = None):
        if obj is None:
            return ()
        editable = obj.status in (ContactImport.Status.UPLOADED, ContactImport.Status.VALIDATED)
        return (
            self.readonly_fields
            if editable
            else ("mapping", "consent_source", *self.readonly_fields)
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def delete_model(self, request: HttpRequest, obj: ContactImport) -> None:
        import_delete(contact_import=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ContactImport]) -> None:
        for contact_import in queryset:  # imports, not contacts: each with its file
            import_delete(contact_import=contact_import)

    def save_model(self, request: HttpRequest, obj: ContactImport, form, change: bool) -> None:
        if change and not {"mapping", "consent_source"} & set(form.changed_data):
            return  # nothing editable changed (a finished import's page saved as it is)
        try:
            if change:
                saved = import_change_mapping(
                    contact_import=obj,
                    mapping=form.cleaned_data.get("mapping") or {},
                    consent_source=form.cleaned_data.get("consent_source", ""),
                )
            else:
                saved = import_create(
                    file=form.cleaned_data["file"],
                    mapping=form.cleaned_data.get("mapping") or {},
                    consent_source=form.cleaned_data.get("consent_source", ""),
                    user=request.user,
                )
        except (ImportInvalid, ImportStateError) as exc:
            # The form checked the header; only a file that breaks further down gets here.
            raise PermissionDenied(str(exc)) from None
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if k != "_state"})
        obj._state.adding = False

    @admin.display(description="Progress")
    def progress_percent(self, obj: ContactImport) -> str:
        return f"{obj.progress:.0%} ({obj.processed_rows:,} of {obj.total_rows:,} rows)"

    @admin.display(description="Validation")
    def validation_summary(self, obj: ContactImport) -> str:
        summary = obj.validation or {}
        if not summary:
            return "—"
        if "file_errors" in summary:
            return format_html_join("", "<p>{}</p>", ((e,) for e in summary["file_errors"]))
        counts = format_html(
            "<p>{} rows: <b>{}</b> would be created, <b>{}</b> updated, {} unchanged; "
            "<b>{}</b> with errors; {} consent changes.</p>",
            summary.get("rows", 0),
            summary.get("would_create", 0),
            summary.get("would_update", 0),
            summary.get("unchanged", 0),
            summary.get("error_rows", 0),
            summary.get("consent_changes", 0),
        )
        errors = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e["line"], e["column"], e["message"]) for e in summary.get("errors", [])[:20]),
        )
        if not errors:
            return counts
        return format_html(
            "{}<table><thead><tr><th>Line</th><th>Column</th><th>Error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            counts,
            errors,
        )

    # --- Staff views: validate, run, status, error report ------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/validate/",
                view(self.validate_view),
                name="audiences_contactimport_validate",
            ),
            path("<int:pk>/run/", view(self.run_view), name="audiences_contactimport_run"),
            path("<int:pk>/status/", view(self.status_view), name="audiences_contactimport_status"),
            path(
                "<int:pk>/errors.csv", view(self.errors_view), name="audiences_contactimport_errors"
            ),
            *super().get_urls(),
        ]

    def _can_run(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    def _step(self, request: HttpRequest, pk: int, step, label: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        if not self._can_run(request):
            raise PermissionDenied
        contact_import = get_object_or_404(ContactImport, pk=pk)
        try:
            with transaction.atomic():
                step(contact_import)
                audit_record(
                    actor=request.user,
                    action=f"import_{label}",
                    target=contact_import,
                    request=request,
                )
        except ImportStateError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Import #{pk}: {label} started.")
        return redirect("admin:audiences_contactimport_change", pk)

    def validate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._step(request, pk, import_tasks.queue_validation, "validate")

    def run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._step(request, pk, import_tasks.start_run, "run")

    def status_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """Polled by the change page's progress bar."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        obj = get_object_or_404(ContactImport, pk=pk)
        return JsonResponse(
            {
                "status": obj.status,
                "progress": obj.progress,
                "processed_rows": obj.processed_rows,
                "total_rows": obj.total_rows,
                "created": obj.created_count,
                "updated": obj.updated_count,
                "unchanged": obj.unchanged_count,
                "errors": obj.error_count,
            }
        )

    def errors_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return export.import_error_report(get_object_or_404(ContactImport, pk=pk))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context = {
                **context,
                "can_run": self._can_run(request),
                "status_url": reverse("admin:audiences_contactimport_status", args=[obj.pk]),
                "errors_url": reverse("admin:audiences_contactimport_errors", args=[obj.pk]),
                "validate_url": reverse("admin:audiences_contactimport_validate", args=[obj.pk]),
                "run_url": reverse("admin:audiences_contactimport_run", args=[obj.pk]),
                "status_json": json.dumps({"status": obj.status, "progress": obj.progress}),
            }
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- Segments: export and static lists --------------------------------------------------


class StaticListForm(forms.Form):
    file = forms.FileField(help_text="A CSV with an external_id, email or phone column.")
    operation = forms.ChoiceField(
        choices=[("add", "Add these contacts"), ("remove", "Remove these contacts")]
    )

    def clean_file(self):
        return _bounded_upload(self.cleaned_data.get("file"))


class ImportExportSegmentAdmin(SegmentAdmin):
    """The segment admin with CSV export (needs audiences.export_contacts: personal data in
    bulk) and a static segment's list upload."""

    actions = [*(SegmentAdmin.actions or []), "export_contacts"]

    def has_export_contacts_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(EXPORT_PERMISSION) and self.has_view_permission(request)

    @admin.action(description="Export contacts as CSV", permissions=["export_contacts"])
    def export_contacts(self, request: HttpRequest, queryset: QuerySet[Segment]):
        if not self.has_export_contacts_permission(request):
            raise PermissionDenied
        segments = list(queryset[:2])
        if len(segments) != 1:
            self.message_user(request, "Choose one segment to export.", messages.WARNING)
            return None
        segment = segments[0]
        audit_record(
            actor=request.user,
            action="export",
            target=Target("audiences.segment", str(segment.pk), f"{segment} (contacts CSV)"),
            request=request,
        )
        return export.segment_export_response(segment=segment)

    def get_urls(self):
        return [
            path(
                "<int:pk>/static-list/",
                self.admin_site.admin_view(self.static_list_view),
                name="audiences_segment_static_list",
            ),
            *super().get_urls(),
        ]

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.kind == Segment.Kind.STATIC:
            fieldsets.append(("Static list", {"fields": ["static_list"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Segment | None = None):
        return (*super().get_readonly_fields(request, obj), "static_list")

    @admin.display(description="From a CSV")
    def static_list(self, obj: Segment) -> str:
        url = reverse("admin:audiences_segment_static_list", args=[obj.pk])
        return format_html('<a href="{}">Add or remove contacts from a CSV…</a>', url)

    def static_list_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = get_object_or_404(Segment, pk=pk)
        if not self.has_change_permission(request, segment):
            raise PermissionDenied
        form = StaticListForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                with transaction.atomic():
                    result = static_list_apply(
                        segment=segment,
                        binary=form.cleaned_data["file"],
                        operation=form.cleaned_data["operation"],
                        now=timezone.now(),
                    )
                    audit_record(
                        actor=request.user,
                        action=f"static_list_{form.cleaned_data['operation']}",
                        target=segment,
                        request=request,
                        details={"rows": result.rows, "changed": result.changed},
                    )
            except StaticListError as exc:
                form.add_error("file", str(exc))
            else:
                verb = "added" if form.cleaned_data["operation"] == "add" else "removed"
                self.message_user(
                    request,
                    f"{result.rows} rows: {result.matched} contacts found, {result.changed} "
                    f"{verb}, {result.unmatched} not found.",
                )
                for error in result.errors:
                    self.message_user(request, error, messages.WARNING)
                return redirect("admin:audiences_segment_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Static list: {segment}",
            "form": form,
            "segment": segment,
            "opts": self.model._meta,
        }
        return render(request, "admin/audiences/static_list.html", context)


admin.site.unregister(Segment)
admin.site.register(Segment, ImportExportSegmentAdmin)
