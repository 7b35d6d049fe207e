"""Admin for journeys: build steps, validate, launch (with versions), dry-run, watch."""

from __future__ import annotations

from adminsortable2.admin import SortableAdminBase, SortableStackedInline
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from audiences.admin import SegmentContactAdmin
from audit.services import audit_record, audit_snapshot
from messaging.admin import ContactAdmin
from messaging.models import Contact

from . import lifecycle, services
from .dryrun import dry_run
from .forms import KIND_FIELDS, DryRunForm, HoldoutPercentField, StepForm
from .models import Enrollment, Event, Journey, Step, SurveyResponse
from .stats import journey_stats
from .trigger_form import JourneyForm
from .validation import journey_problems

_TRIGGER_CHOICE = ("trigger_kind", "trigger_segment")


def _is_live(journey: Journey | None) -> bool:
    return bool(journey and journey.pk and journey.status == Journey.Status.ACTIVE)


class StepInline(SortableStackedInline):
    model = Step
    form = StepForm
    extra = 0
    fields = (
        "position",
        "key",
        "kind",
        "next_step",
        *sorted({f for v in KIND_FIELDS.values() for f in v}),
    )

    def get_fields(self, request: HttpRequest, obj: Journey | None = None):
        if _is_live(obj):
            return ("position", "key", "kind", "next_step", "config")  # shown read-only
        return super().get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Journey | None = None) -> bool:
        # A live journey is edited through a new version, so running enrollments keep theirs.
        return not _is_live(obj) and super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Journey | None = None) -> bool:
        return not _is_live(obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Journey | None = None) -> bool:
        return not _is_live(obj) and super().has_delete_permission(request, obj)


@admin.register(Journey)
class JourneyAdmin(SortableAdminBase, admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "version",
        "status",
        "trigger_event",
        "goal_event",
        "category",
        "entry_policy",
    )
    list_filter = ("status", "category")
    search_fields = ("name", "slug", "trigger_event")
    inlines = [StepInline]
    readonly_fields = ("stats",)
    actions = ["activate", "pause", "archive", "duplicate", "new_version"]
    change_form_template = "admin/journeys/journey/change_form.html"
    form = JourneyForm
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "status", "version")}),
        (
            "Entry",
            {
                "fields": (
                    ("trigger_kind", "trigger_segment"),
                    "trigger_event",
                    "trigger_filter",
                    ("entry_policy", "entry_key"),
                    ("goal_event", "goal_match"),
                    ("exit_event", "exit_match"),
                )
            },
        ),
        (
            "Policies",
            {
                "fields": (
                    "category",
                    "topic",
                    ("quiet_hours_start", "quiet_hours_end"),
                    "frequency_cap_action",
                )
            },
        ),
        ("Experiment", {"fields": ("holdout_percent",)}),
        (
            "Conversion",
            {
                "fields": (
                    "conversion_events",
                    ("conversion_window_hours", "attribution_model"),
                    "revenue_property",
                ),
                "description": "An event named here, within the window after one of this "
                "journey's messages, is a conversion credited to that message (last click, else "
                "last delivered: docs/ATTRIBUTION.md). Editable while live: it changes no send.",
            },
        ),
        ("Results", {"fields": ("stats",)}),
    )

    class Media:
        js = ("journeys/step_form.js",)

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "holdout_percent":
            # Left empty (or absent from an older form) means no holdout, not an error.
            return HoldoutPercentField(label="Holdout (%)", initial=0, help_text=db_field.help_text)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Journey | None = None):
        if not _is_live(obj):
            return self.fieldsets
        # A live journey's trigger is read-only: the segment choice is shown by the fields.
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != _TRIGGER_CHOICE]})
            for name, opts in self.fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Journey | None = None):
        readonly = ["stats", "version", "status"]
        if _is_live(obj):
            readonly += [
                "slug",
                "trigger_event",
                "trigger_filter",
                "entry_policy",
                "entry_key",
                "goal_event",
                "goal_match",
                "exit_event",
                "exit_match",
                "category",
                # Moving the control group mid-experiment would mix the groups: new version.
                "holdout_percent",
                "topic",
            ]
        return readonly

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "step_kind_fields": KIND_FIELDS}
        if object_id:
            journey = Journey.objects.filter(pk=object_id).first()
            if journey is not None:
                if _is_live(journey):
                    extra_context["live_notice"] = (
                        "This journey is live: its steps are locked. Use the “Create a new "
                        "version” action to change them; running enrollments finish on this "
                        "version."
                    )
                elif journey.status == Journey.Status.DRAFT:
                    extra_context["problems"] = journey_problems(journey)
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="Statistics")
    def stats(self, obj: Journey) -> str:
        if not obj.pk:
            return "—"
        data = journey_stats(obj)
        e, nps = data["enrollments"], data["nps"]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    s["key"],
                    # A split's kind cell also counts its variants: "split (a: 40, b: 38)".
                    f"{s['kind']} ({', '.join(f'{k}: {n}' for k, n in s['variants'].items())})"
                    if s.get("variants")
                    else s["kind"],
                    s["entered"],
                    s.get("sent", ""),
                    s.get("delivered", ""),
                    s.get("failed", ""),
                    s.get("replied", ""),
                    s.get("opened", ""),
                    s.get("clicked", ""),
                )
                for s in data["steps"]
            ),
        )
        return format_html(
            "<p>Entered {} · active {} · waiting {} · completed {} · converted {} · exited {} · "
            "failed {} · held out {}</p>"
            "<p>NPS {} ({} promoters, {} passives, {} detractors, {} unanswered)"
            "</p><table><thead><tr><th>Step</th><th>Kind</th><th>Entered</th><th>Sent</th>"
            "<th>Delivered</th><th>Failed</th><th>Replied</th><th>Opened</th><th>Clicked</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            e["entered"],
            e["active"],
            e["waiting"],
            e["completed"],
            e["converted"],
            e["exited"],
            e["failed"],
            e["holdout"],
            nps["score"] if nps["score"] is not None else "—",
            nps["promoters"],
            nps["passives"],
            nps["detractors"],
            nps["unanswered"],
            rows,
        )

    @admin.action(description="Activate (after checking the journey)", permissions=["change"])
    def activate(self, request, queryset):
        for journey in queryset:
            problems = lifecycle.journey_activate(journey=journey)
            if problems:
                self.message_user(
                    request, f"{journey} not activated: " + " ".join(problems), messages.ERROR
                )
            else:
                self.message_user(request, f"{journey} (v{journey.version}) is live.")

    @admin.action(description="Pause (running enrollments hold)", permissions=["change"])
    def pause(self, request, queryset):
        for journey in queryset:
            lifecycle.journey_set_status(journey=journey, status=Journey.Status.PAUSED)
        self.message_user(request, f"{queryset.count()} journey(s) paused.")

    @admin.action(
        description="Archive (no new entries; running ones finish)", permissions=["change"]
    )
    def archive(self, request, queryset):
        for journey in queryset:
            lifecycle.journey_set_status(journey=journey, status=Journey.Status.ARCHIVED)
        self.message_user(request, f"{queryset.count()} journey(s) archived.")

    @admin.action(description="Duplicate as a new draft journey", permissions=["add"])
    def duplicate(self, request, queryset):
        for journey in queryset:
            slug = f"{journey.slug}-copy"
            n = 2
            while Journey.objects.filter(slug=slug).exists():
                slug, n = f"{journey.slug}-copy-{n}", n + 1
            copy = lifecycle.journey_copy(journey=journey, slug=slug, name=f"{journey.name} (copy)")
            self.message_user(
                request,
                format_html(
                    'Created <a href="{}">{}</a> (draft).',
                    reverse("admin:journeys_journey_change", args=[copy.pk]),
                    copy,
                ),
            )

    @admin.action(description="Create a new version (draft) to edit", permissions=["add"])
    def new_version(self, request, queryset):
        for journey in queryset:
            copy = lifecycle.journey_copy(journey=journey)
            self.message_user(
                request,
                format_html(
                    'Created <a href="{}">{} v{}</a> (draft); activating it archives v{}.',
                    reverse("admin:journeys_journey_change", args=[copy.pk]),
                    copy,
                    copy.version,
                    journey.version,
                ),
            )

    def get_urls(self):
        return [
            path(
                "<int:pk>/dry-run/",
                self.admin_site.admin_view(self.dryrun_view),
                name="journeys_journey_dryrun",
            ),
            *super().get_urls(),
        ]

    def dryrun_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        journey = get_object_or_404(Journey, pk=pk)
        # Nothing is kept or sent, but it shows what a contact would get: both views needed.
        if not (
            self.has_view_permission(request, journey)
            and request.user.has_perm("messaging.view_contact")
        ):
            raise PermissionDenied
        form = DryRunForm(
            request.POST or None,
            initial={
                "contact": Contact.objects.order_by("-id").values_list("pk", flat=True).first()
            },
        )
        result, contact = None, None
        if request.method == "POST" and form.is_valid():
            contact = Contact.objects.filter(pk=form.cleaned_data["contact"]).first()
            if contact is None:
                form.add_error("contact", "No contact with this id.")
            else:
                result = dry_run(
                    journey=journey,
                    contact=contact,
                    properties=form.cleaned_data["properties"],
                    replies=form.cleaned_data["replies"],
                )
        return render(
            request,
            "admin/journeys/journey/dryrun.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Dry run: {journey}",
                "journey": journey,
                "form": form,
                "result": result,
                "contact": contact,
                "opts": self.model._meta,
            },
        )


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = (
        "journey",
        "contact",
        "state",
        "current_step",
        "next_run_at",
        "waiting_for",
        "entered_at",
    )
    list_filter = ("state", "journey")
    list_select_related = ("journey", "contact", "current_step")
    search_fields = ("contact__external_id", "contact__email", "contact__phone")
    raw_id_fields = ("contact", "trigger_event", "wake_event")
    readonly_fields = (
        "journey",
        "contact",
        "trigger_event",
        "entry_policy",
        "journey_version",
        "state",
        "current_step",
        "next_run_at",
        "waiting_for",
        "wait_until",
        "wake_event",
        "context",
        "exit_reason",
        "entered_at",
        "updated_at",
        "ended_at",
    )
    show_full_result_count = False
    actions = ["exit_enrollments", "fast_forward"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_fast_forward_enrollment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("journeys.fast_forward_enrollment")

    @admin.action(description="Exit the selected enrollments", permissions=["change"])
    def exit_enrollments(self, request, queryset):
        count = sum(
            services.enrollment_exit(enrollment=e, reason=f"exited by {request.user}")
            for e in queryset
        )
        self.message_user(request, f"{count} enrollment(s) exited.")

    @admin.action(
        description="Skip the current wait now (demo time travel)",
        permissions=["fast_forward_enrollment"],
    )
    def fast_forward(self, request, queryset):
        count = services.enrollments_fast_forward(queryset=queryset)
        self.message_user(
            request, f"{count} waiting enrollment(s) fast-forwarded.", messages.SUCCESS
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/exit/",
                self.admin_site.admin_view(self.exit_view),
                name="journeys_enrollment_exit",
            ),
            *super().get_urls(),
        ]

    def exit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        enrollment = get_object_or_404(
            Enrollment.objects.select_related("journey", "contact"), pk=pk
        )
        if not self.has_change_permission(request, enrollment):
            raise PermissionDenied
        if request.method == "POST":
            before = audit_snapshot(enrollment)
            if services.enrollment_exit(enrollment=enrollment, reason=f"exited by {request.user}"):
                enrollment.refresh_from_db()
                after = audit_snapshot(enrollment)
                audit_record(
                    actor=request.user,
                    action="exit",
                    target=enrollment,
                    before=before,
                    after=after,
                    request=request,
                )
            self.message_user(request, "Enrollment exited.")
            return HttpResponseRedirect(
                reverse("admin:messaging_contact_change", args=[enrollment.contact_id])
            )
        return render(
            request,
            "admin/journeys/enrollment/exit_confirm.html",
            {
                **self.admin_site.each_context(request),
                "enrollment": enrollment,
                "title": "Exit enrollment",
            },
        )


class ContactEnrollmentInline(admin.TabularInline):
    model = Enrollment
    fk_name = "contact"
    extra = 0
    can_delete = False
    fields = ("journey", "state", "current_step", "next_run_at", "waiting_for", "exit_link")
    readonly_fields = fields
    verbose_name_plural = "Active journeys"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(state__in=Enrollment.LIVE_STATES)
            .select_related("journey", "current_step")
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="")
    def exit_link(self, obj: Enrollment) -> str:
        if obj.pk is None:
            return ""  # an incomplete (e.g. forged) contact form re-rendered: no 500
        return format_html(
            '<a href="{}">Exit…</a>', reverse("admin:journeys_enrollment_exit", args=[obj.pk])
        )


class ContactWithJourneysAdmin(SegmentContactAdmin):
    """The contact page, plus the journeys it is in (journeys knows messaging, not the
    other way round, so the inline is added here), on top of audiences' contact admin
    (its "Add to static segment" action)."""

    inlines = [*ContactAdmin.inlines, ContactEnrollmentInline]


admin.site.unregister(Contact)
admin.site.register(Contact, ContactWithJourneysAdmin)


@admin.register(SurveyResponse)
class SurveyResponseAdmin(admin.ModelAdmin):
    list_display = (
        "answered_at",
        "journey",
        "contact",
        "status",
        "score",
        "nps_category",
        "choice",
        "raw_answer",
    )
    list_filter = ("journey", "status", "nps_category")
    list_select_related = ("journey", "contact")
    date_hierarchy = "answered_at"
    readonly_fields = [f.name for f in SurveyResponse._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "name", "contact", "source")
    list_filter = ("source", "name")
    list_select_related = ("contact",)
    search_fields = ("name", "contact__external_id", "=idempotency_key")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in Event._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
