"""Admin for journeys: build steps, launch, watch enrollments and survey answers."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from . import services
from .models import Enrollment, Event, Journey, Step, SurveyResponse
from .stats import journey_stats


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ("position", "key", "kind", "config", "next_step")
    ordering = ("position",)


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "status",
        "trigger_event",
        "goal_event",
        "category",
        "entry_policy",
        "version",
    )
    list_filter = ("status", "category")
    search_fields = ("name", "slug", "trigger_event")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [StepInline]
    readonly_fields = ("stats",)
    actions = ["activate", "pause", "archive"]

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
                    s["kind"],
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
            "failed {}</p><p>NPS {} ({} promoters, {} passives, {} detractors, {} unanswered)"
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
            nps["score"] if nps["score"] is not None else "—",
            nps["promoters"],
            nps["passives"],
            nps["detractors"],
            nps["unanswered"],
            rows,
        )

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: str) -> None:
        count = queryset.update(status=status)
        self.message_user(request, f"{count} journey(s) now {status}.")

    @admin.action(description="Activate")
    def activate(self, request, queryset):
        self._set_status(request, queryset, Journey.Status.ACTIVE)

    @admin.action(description="Pause")
    def pause(self, request, queryset):
        self._set_status(request, queryset, Journey.Status.PAUSED)

    @admin.action(description="Archive")
    def archive(self, request, queryset):
        self._set_status(request, queryset, Journey.Status.ARCHIVED)


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

    @admin.action(description="Exit the selected enrollments")
    def exit_enrollments(self, request, queryset):
        count = sum(
            services.enrollment_exit(enrollment=e, reason=f"exited by {request.user}")
            for e in queryset
        )
        self.message_user(request, f"{count} enrollment(s) exited.")

    @admin.action(description="Skip the current wait now (demo time travel)")
    def fast_forward(self, request, queryset):
        count = services.enrollments_fast_forward(queryset=queryset)
        self.message_user(
            request, f"{count} waiting enrollment(s) fast-forwarded.", messages.SUCCESS
        )


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
