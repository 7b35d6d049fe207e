"""Campaigns → Broadcasts in the admin: the form marketers fill in (drafts only), a review
page (dry run, per-channel audience, test send, typed confirmation → launch), pause / resume
/ cancel with confirmation, the report with its chart, and the recipient list.

Every button's view checks `campaigns.launch_broadcast` (or its own permission) itself and
records an audit entry; hiding a button is a courtesy. Draft edits go through
campaigns.drafts, which refuses to change a launched broadcast whatever was posted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from audit.admin_mixins import ReadOnlyAdminMixin

from . import admin_views, drafts
from .drafts import template_channels
from .errors import BroadcastError
from .forms import CHANNEL_LABELS, BroadcastForm
from .models import Broadcast, BroadcastRecipient
from .reports import broadcast_report
from .status import allowed_actions


def offered_actions(broadcast: Broadcast) -> list[str]:
    """The buttons a broadcast's status offers (the services decide again)."""
    return [name for name in allowed_actions(broadcast.status) if name != "launch"]


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    form = BroadcastForm
    list_display = ("name", "status", "category", "schedule", "recipient_count", "launched_at")
    list_filter = ("status", "category", "send_mode")
    search_fields = ("name", "slug", "template_slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("segments", "exclude_segments")
    change_form_template = "admin/campaigns/broadcast/change_form.html"
    # No bulk actions: a launched broadcast's record is history, and each button below
    # is its own audited view.
    actions = None
    fieldsets = (
        (None, {"fields": ("name", "slug", "description")}),
        ("Audience", {"fields": ("segments", "exclude_segments")}),
        ("Message", {"fields": ("template_slug", "channel_order", "category", "topic")}),
        (
            "Experiment",
            {
                "fields": (
                    "variants",
                    ("variant_test_percent", "winner_after_hours", "winner_metric"),
                    "holdout_percent",
                ),
                "classes": ("collapse",),
                "description": "Optional. Variants split the audience between template "
                "families; a test share gets them first and the rest the winner; a holdout "
                "is never sent anything, to measure the uplift (see the report).",
            },
        ),
        (
            "When",
            {
                "fields": (
                    "send_mode",
                    "send_at",
                    ("local_send_date", "local_send_time"),
                    "throttle_per_minute",
                    "end_at",
                    ("quiet_hours_start", "quiet_hours_end"),
                    "frequency_cap_action",
                ),
                "description": "Quiet hours and the frequency cap apply to marketing SMS and "
                "WhatsApp; held messages go out when they end (unless past “Stop sending at”).",
            },
        ),
        (
            "Conversion",
            {
                "fields": (
                    "conversion_events",
                    ("conversion_window_hours", "attribution_model"),
                    "revenue_property",
                ),
                "description": "An event named here, within the window after a recipient's "
                "message, is a conversion credited to that message (docs/ATTRIBUTION.md).",
            },
        ),
    )
    launched_fieldsets = (
        (
            "Status",
            {
                "fields": (
                    "status",
                    "recipient_count",
                    "timeline",
                    "results",
                    ("winner_variant", "winner_chosen_at"),
                )
            },
        ),
    )

    @admin.display(description="When")
    def schedule(self, obj: Broadcast) -> str:
        if obj.send_mode == Broadcast.SendMode.AT and obj.send_at:
            return f"at {obj.send_at:%Y-%m-%d %H:%M} UTC"
        if obj.send_mode == Broadcast.SendMode.LOCAL and obj.local_send_date:
            return f"{obj.local_send_date} {obj.local_send_time or ''} local time"
        return "at launch"

    @admin.display(description="Timeline")
    def timeline(self, obj: Broadcast) -> str:
        parts = [
            (label, getattr(obj, f"{name}_at"))
            for name, label in (
                ("launched", "launched"),
                ("paused", "paused"),
                ("cancelled", "cancelled"),
                ("completed", "completed"),
            )
        ]
        return ", ".join(f"{label} {at:%Y-%m-%d %H:%M} UTC" for label, at in parts if at) or "—"

    @admin.display(description="Results")
    def results(self, obj: Broadcast) -> str:
        totals = broadcast_report(broadcast=obj)["totals"]
        return format_html(
            "{} recipients · {} sent · {} delivered · {} failed · {} opened · {} clicked · "
            '{} conversions — <a href="{}">full report</a> · <a href="{}">recipients</a>',
            totals["recipients"],
            totals["sent"],
            totals["delivered"],
            totals["failed"],
            totals["opened"],
            totals["clicked"],
            totals["conversions"],
            reverse("admin:campaigns_broadcast_report", args=[obj.pk]),
            reverse("admin:campaigns_broadcastrecipient_changelist")
            + f"?broadcast__id__exact={obj.pk}",
        )

    @admin.display(description="Channel order")
    def channel_order_display(self, obj: Broadcast) -> str:
        return " → ".join(CHANNEL_LABELS.get(c, c) for c in obj.channel_order or []) or "—"

    @admin.display(description="Template family")
    def template_family(self, obj: Broadcast) -> str:
        channels = ", ".join(CHANNEL_LABELS.get(c, c) for c in template_channels(obj.template_slug))
        return f"{obj.template_slug} — {channels or 'no templates'}"

    def _launched_fields(self) -> tuple:
        shown = {"channel_order": "channel_order_display", "template_slug": "template_family"}
        return tuple(
            (name, {**spec, "fields": tuple(_swap(spec["fields"], shown))})
            for name, spec in self.fieldsets
        )

    def get_form(self, request: HttpRequest, obj: Broadcast | None = None, change=False, **kw):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            kw["form"] = forms.ModelForm  # nothing editable (the marketer's fields are gone)
        return super().get_form(request, obj, change, **kw)

    def get_fieldsets(self, request: HttpRequest, obj: Broadcast | None = None):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            return (*self.launched_fieldsets, *self._launched_fields())
        return self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Broadcast | None = None):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            # What was frozen at launch is what is sent: nothing to edit.
            return [
                "status",
                "recipient_count",
                "timeline",
                "results",
                "winner_variant",
                "winner_chosen_at",
                *(f for _, spec in self._launched_fields() for f in _flat(spec["fields"])),
            ]
        return ["slug"] if obj is not None else []

    def get_prepopulated_fields(self, request: HttpRequest, obj: Broadcast | None = None):
        return {} if obj is not None else self.prepopulated_fields

    def has_delete_permission(self, request: HttpRequest, obj: Broadcast | None = None) -> bool:
        # A launched broadcast's record and recipients are kept.
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def has_launch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.launch_broadcast")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        broadcast = Broadcast.objects.filter(pk=object_id).first() if object_id else None
        if (
            request.method == "POST"
            and broadcast is not None
            and broadcast.status != Broadcast.Status.DRAFT
        ):
            # Read-only on the page and refused here: nothing of a launched broadcast changes.
            self.message_user(
                request,
                f"{broadcast} is {broadcast.get_status_display().lower()}: only drafts can be "
                "changed. Nothing was saved.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.path)
        extra_context = {**(extra_context or {})}
        if broadcast is not None and broadcast.status != Broadcast.Status.DRAFT:
            extra_context.update(
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False
            )
        if broadcast is not None:
            extra_context.update(
                offered_actions=offered_actions(broadcast),
                can_launch=self.has_launch_permission(request),
                report_data_url=reverse(
                    "admin:campaigns_broadcast_report_data", args=[broadcast.pk]
                ),
            )
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except admin_views.Refused as exc:  # launched (or the slug taken) meanwhile
            for name, msgs in exc.error.errors.items():
                for msg in msgs:
                    self.message_user(request, f"{name}: {msg}" if name else msg, messages.ERROR)
            return HttpResponseRedirect(request.path)

    def save_model(self, request: HttpRequest, obj: Broadcast, form, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in drafts.FIELDS if name in form.fields}
        segments = list(form.cleaned_data["segments"])
        excluded = list(form.cleaned_data.get("exclude_segments") or [])
        try:
            if change:
                saved = drafts.broadcast_update(
                    broadcast=obj, values=values, segments=segments, exclude_segments=excluded
                )
            else:
                saved = drafts.broadcast_create(
                    values=values,
                    segments=segments,
                    exclude_segments=excluded,
                    created_by=request.user,
                )
        except BroadcastError as exc:  # launched or taken meanwhile: the form checked first
            raise admin_views.Refused(exc) from exc
        obj.pk = saved.pk
        obj.refresh_from_db()
        form.instance = obj

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """The segments were set by the draft writer."""

    def get_urls(self):
        views = admin_views.BroadcastViews(self)
        route = self.admin_site.admin_view
        return [
            path("<int:pk>/review/", route(views.review), name="campaigns_broadcast_review"),
            path(
                "<int:pk>/send-test/",
                route(views.send_test),
                name="campaigns_broadcast_send_test",
            ),
            path("<int:pk>/launch/", route(views.launch), name="campaigns_broadcast_launch"),
            path("<int:pk>/pause/", route(views.pause), name="campaigns_broadcast_pause"),
            path("<int:pk>/resume/", route(views.resume), name="campaigns_broadcast_resume"),
            path("<int:pk>/cancel/", route(views.cancel), name="campaigns_broadcast_cancel"),
            path("<int:pk>/report/", route(views.report), name="campaigns_broadcast_report"),
            path(
                "<int:pk>/report/data/",
                route(views.report_data),
                name="campaigns_broadcast_report_data",
            ),
            *super().get_urls(),
        ]

    def response_change(self, request: HttpRequest, obj: Broadcast) -> HttpResponse:
        if "_review" in request.POST:
            return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[obj.pk]))
        return super().response_change(request, obj)

    def response_add(self, request: HttpRequest, obj: Broadcast, post_url_continue=None):
        if "_review" in request.POST:
            return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[obj.pk]))
        return super().response_add(request, obj, post_url_continue)


def _swap(fields: Any, shown: dict[str, str]) -> list[Any]:
    return [
        tuple(shown.get(f, f) for f in field)
        if isinstance(field, tuple)
        else shown.get(field, field)
        for field in fields
    ]


def _flat(fields: Any) -> list[str]:
    out: list[str] = []
    for f in fields:
        out.extend(f if isinstance(f, tuple | list) else [f])
    return out


@admin.register(BroadcastRecipient)
class BroadcastRecipientAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who a broadcast went to, and what happened: read-only (the sending engine writes it)."""

    list_display = (
        "contact_link",
        "broadcast",
        "state",
        "channel",
        "reason",
        "send_after",
        "message_status",
        "updated_at",
    )
    list_filter = ("state", "channel", "broadcast", "reason")
    list_select_related = ("broadcast", "contact", "message")
    search_fields = ("contact__external_id", "contact__email", "contact__phone", "reason")
    raw_id_fields = ("broadcast", "contact", "message")
    show_full_result_count = False
    actions = None

    @admin.display(description="Contact")
    def contact_link(self, obj: BroadcastRecipient) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("touchline-timeline", args=[obj.contact_id]), obj.contact
        )

    @admin.display(description="Message")
    def message_status(self, obj: BroadcastRecipient) -> str:
        if obj.message is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:messaging_message_change", args=[obj.message_id]),
            obj.message.get_status_display(),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[BroadcastRecipient]:
        return super().get_queryset(request).order_by("-updated_at", "-id")
