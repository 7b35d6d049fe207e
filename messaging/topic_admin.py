"""Admin for subscription topics: Marketing defines them (add, change; the standard admin
views check `messaging.add_topic` / `change_topic`), superusers delete unused ones, and every
save is in the audit log (audit.admin_mixins wraps every ModelAdmin)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from .models import ConsentStatus, Topic


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "kind",
        "is_active",
        "position",
        "subscribed_count",
        "unsubscribed_count",
    )
    list_filter = ("is_active", "default_subscribed")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description", "default_subscribed", "is_active", "position")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Topic]:
        # Counted in the list's one query.
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_subscribed=Count(
                    "subscriptions", filter=Q(subscriptions__status=ConsentStatus.SUBSCRIBED)
                ),
                n_unsubscribed=Count(
                    "subscriptions", filter=Q(subscriptions__status=ConsentStatus.UNSUBSCRIBED)
                ),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Topic | None = None):
        # Segments and the API name a topic by slug: it is fixed once saved.
        return ("slug",) if obj is not None else ()

    def get_prepopulated_fields(self, request: HttpRequest, obj: Topic | None = None):
        return {} if obj is not None else self.prepopulated_fields

    @admin.display(description="Kind", boolean=False)
    def kind(self, obj: Topic) -> str:
        return "opt-out (default on)" if obj.default_subscribed else "opt-in (default off)"

    @admin.display(description="Subscribed", ordering="n_subscribed")
    def subscribed_count(self, obj: Topic) -> int:
        return obj.n_subscribed

    @admin.display(description="Unsubscribed", ordering="n_unsubscribed")
    def unsubscribed_count(self, obj: Topic) -> int:
        return obj.n_unsubscribed
