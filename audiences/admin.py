"""Segments in the admin: the definition as JSON (validated on save), a live count and a
sample of matching contacts, the entered/left history, and "Add to static segment" on
the contact list."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.admin_mixins import ReadOnlyAdminMixin
from messaging.admin import ContactAdmin
from messaging.models import Contact

from . import services
from .admin_builder import builder_options, segment_preview_view, size_chart_svg
from .definition import DefinitionError
from .dirty import contacts_mark_changed
from .models import Segment, SegmentMembership, SegmentMembershipChange
from .selectors import segment_size_history

SAMPLE_SIZE = 20
SIZE_DAYS = 30


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "slug", "kind", "description", "definition"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or (self.instance.kind if self.instance.pk else None)
        slug = self.instance.slug if self.instance.pk else cleaned.get("slug")
        if kind and "definition" in cleaned:
            try:
                services.segment_validate(
                    definition=cleaned["definition"], kind=kind, slug=slug or None
                )
            except DefinitionError as exc:
                self.add_error(
                    "definition",
                    [
                        f"{path or 'definition'}: {msg}"
                        for path, msgs in exc.errors.items()
                        for msg in msgs
                    ],
                )
        return cleaned


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "slug", "kind", "member_count", "last_computed_at", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "slug", "description")
    actions = ["recompute"]
    change_form_template = "admin/audiences/segment/change_form.html"
    readonly_fields = (
        "live_count",
        "sample",
        "size_over_time",
        "history",
        "member_count",
        "last_computed_at",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Segment | None = None):
        fixed = ("slug", "kind") if obj is not None else ()
        return (*fixed, *self.readonly_fields)

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None):
        main = ["name", "slug", "kind", "description", "definition"]
        if obj is None:
            return [(None, {"fields": main})]
        return [
            (None, {"fields": main}),
            ("Who matches the saved definition", {"fields": ["live_count", "sample"]}),
            (
                "Membership",
                {"fields": ["member_count", "last_computed_at", "size_over_time", "history"]},
            ),
            ("Record", {"fields": ["created_at", "updated_at"]}),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        segment = Segment.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        editable = self.has_change_permission(request, segment) or (
            segment is None and self.has_add_permission(request)
        )
        if editable and (segment is None or segment.kind == Segment.Kind.DYNAMIC):
            extra_context = {
                **(extra_context or {}),
                "builder_options": builder_options(exclude=segment.slug if segment else None),
            }
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        preview = path(
            "preview/",
            self.admin_site.admin_view(segment_preview_view),
            name="audiences_segment_preview",
        )
        return [preview, *super().get_urls()]

    def save_model(self, request: HttpRequest, obj: Segment, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.kind == Segment.Kind.DYNAMIC and (not change or "definition" in form.changed_data):
            # The membership follows the new definition now, not at the next beat.
            from .tasks import recompute_segment

            pk = obj.pk
            transaction.on_commit(lambda: recompute_segment.delay(pk), robust=True)

    @admin.display(description=f"Size over the last {SIZE_DAYS} days")
    def size_over_time(self, obj: Segment) -> str:
        now = timezone.now()
        points = segment_size_history(segment=obj, now=now, days=SIZE_DAYS)
        return size_chart_svg(points, now=now, days=SIZE_DAYS)

    @admin.display(description="Live count")
    def live_count(self, obj: Segment) -> str:
        return f"{services.segment_count(segment=obj):,}"

    @admin.display(description=f"Sample ({SAMPLE_SIZE} contacts)")
    def sample(self, obj: Segment) -> str:
        contacts = services.segment_members(segment=obj).order_by("-id")[:SAMPLE_SIZE]
        rows = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:messaging_contact_change", args=[c.pk]), str(c)) for c in contacts),
        )
        return rows or "—"

    @admin.display(description="Entered / left history")
    def history(self, obj: Segment) -> str:
        url = reverse("admin:audiences_segmentmembershipchange_changelist")
        return format_html('<a href="{}?segment__id__exact={}">History</a>', url, obj.pk)

    @admin.action(description="Recompute membership now (dynamic segments)", permissions=["change"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        now = timezone.now()
        done = 0
        for segment in queryset.filter(kind=Segment.Kind.DYNAMIC):  # segments, not contacts
            services.segment_recompute(segment=segment, now=now)
            done += 1
        self.message_user(request, f"Recomputed {done} dynamic segment(s).")


@admin.register(SegmentMembershipChange)
class SegmentMembershipChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Entered/left history: append-only, read-only for everyone."""

    list_display = ("at", "segment", "contact", "change")
    list_filter = ("change", "segment")
    list_select_related = ("segment", "contact")
    raw_id_fields = ("segment", "contact")
    date_hierarchy = "at"
    show_full_result_count = False
    actions = None


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("segment", "contact", "entered_at")
    list_filter = ("segment",)
    list_select_related = ("segment", "contact")
    raw_id_fields = ("segment", "contact")
    show_full_result_count = False
    actions = None


# --- "Add to static segment" on the contact list -------------------------------------------


class AddToStaticSegmentForm(forms.Form):
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.filter(kind=Segment.Kind.STATIC).order_by("name"),
        help_text="Static segments only: dynamic ones follow their definition.",
    )


class SegmentContactAdmin(ContactAdmin):
    """The contact admin, with the action audiences adds (messaging knows nothing of it)."""

    actions = [*(ContactAdmin.actions or []), "add_to_static_segment"]

    def save_model(self, request: HttpRequest, obj: Contact, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        contacts_mark_changed([obj.pk])  # its dynamic segments follow within seconds

    def has_change_segment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("audiences.change_segment") and self.has_view_permission(
            request
        )

    @admin.action(description="Add to static segment", permissions=["change_segment"])
    def add_to_static_segment(self, request: HttpRequest, queryset: QuerySet[Contact]):
        if "apply" in request.POST:
            form = AddToStaticSegmentForm(request.POST)
            if form.is_valid():
                added = services.static_segment_add(
                    segment=form.cleaned_data["segment"], contacts=queryset, now=timezone.now()
                )
                self.message_user(
                    request, f"{added} contact(s) added to {form.cleaned_data['segment']}."
                )
                return None
            self.message_user(request, "Choose a static segment.", messages.ERROR)
        else:
            form = AddToStaticSegmentForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Add to static segment",
            "form": form,
            "contacts": queryset.only("pk")[:1000],
            "select_across": request.POST.get("select_across") == "1",
            "opts": self.model._meta,
            "action": "add_to_static_segment",
        }
        return render(request, "admin/audiences/add_to_static_segment.html", context)


admin.site.unregister(Contact)
admin.site.register(Contact, SegmentContactAdmin)
from . import import_admin  # noqa: E402,F401
