"""Admin for outbound webhooks: subscriptions (secret shown once, re-enable action) and
read-only deliveries with their attempts."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from . import services
from .models import EventType, WebhookAttempt, WebhookDelivery, WebhookSubscription


class SubscriptionForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookSubscription
        fields = ("url", "description", "event_types", "is_active")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = (
        "url",
        "description",
        "status",
        "disabled_reason",
        "consecutive_failures",
        "created_at",
    )
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    readonly_fields = (
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "created_by_key",
        "created_at",
        "updated_at",
    )
    list_select_related = ("created_by_key",)
    show_full_result_count = False
    actions = ("reenable",)

    @admin.display(description="Status", boolean=False)
    def status(self, obj: WebhookSubscription) -> str:
        return "active" if obj.is_active else "disabled"

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form: forms.Form, change: bool
    ) -> None:
        if change:
            data = {k: form.cleaned_data[k] for k in ("url", "description", "event_types")}
            if "is_active" in form.changed_data:
                data["is_active"] = form.cleaned_data["is_active"]
            # The service decides what a change of is_active means (re-enabling clears the
            # failures, disabling stops pending sends), so it starts from the stored row, not
            # from obj, which the form has already changed.
            stored = WebhookSubscription.objects.get(pk=obj.pk)
            services.subscription_update(subscription=stored, data=data)
            return
        created = services.subscription_create(
            url=obj.url,
            event_types=obj.event_types,
            description=obj.description,
            is_active=obj.is_active,
        )
        obj.pk = created.pk
        obj.secret_encrypted = created.secret_encrypted
        self.message_user(
            request,
            format_html(
                "Signing secret for this endpoint — copy it now, it is not shown again: "
                "<code>{}</code>",
                created.secret,  # decrypted for this one message; stored encrypted only
            ),
            messages.WARNING,
        )

    @admin.action(
        description="Re-enable (clear the failure count and reason)", permissions=["change"]
    )
    def reenable(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        count = 0
        for subscription in queryset:
            services.subscription_enable(subscription=subscription)
            count += 1
        self.message_user(request, f"Re-enabled {count} subscription(s).", messages.SUCCESS)


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "duration_ms", "error", "response_body")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "webhook_id",
        "event_type",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("webhook_id",)
    list_select_related = ("subscription",)
    show_full_result_count = False
    date_hierarchy = "created_at"
    inlines = (AttemptInline,)
    fields = (
        "webhook_id",
        "subscription",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "created_at",
        "finished_at",
        "payload_json",
    )
    readonly_fields = fields

    @admin.display(description="Payload")
    def payload_json(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
