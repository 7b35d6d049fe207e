"""Django admin for marketing and support staff: contacts, templates, messages, timeline."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from audit.admin_mixins import ReadOnlyAdminMixin
from audit.services import audit_record

from . import services
from .forms import ConsentForm, SendMessageForm, SendTestForm
from .models import (
    ApiKey,
    Consent,
    ConsentChange,
    Contact,
    Direction,
    Message,
    Template,
    TopicSubscription,
    Touchpoint,
)
from .staff_sends import staff_test_recipients, staff_test_send
from .template_usage import template_users

TIMELINE_ROWS = 50


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ("channel", "status", "source", "changed_at")
    readonly_fields = fields
    verbose_name_plural = "Consent (change it with “Set consent” above)"


class TopicSubscriptionInline(ReadOnlyInline):
    model = TopicSubscription
    fields = ("topic", "status", "source", "changed_at")
    readonly_fields = fields
    verbose_name_plural = "Topic subscriptions (the contact's choices on the preference page)"


class ConsentChangeInline(ReadOnlyInline):
    model = ConsentChange
    fields = (
        "changed_at",
        "channel",
        "topic",
        "previous_status",
        "status",
        "source",
        "note",
        "message",
    )
    readonly_fields = fields
    verbose_name_plural = "Consent history"
    ordering = ("-changed_at",)


def _timeline_html(touchpoints) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                tp.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
                tp.get_channel_display() or "—",
                tp.direction,
                tp.kind,
                _touchpoint_summary(tp),
            )
            for tp in touchpoints
        ),
    )
    return format_html(
        '<table class="touchline-timeline"><thead><tr><th>When (UTC)</th><th>Channel</th>'
        "<th>Direction</th><th>What</th><th>Details</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


def _touchpoint_summary(tp: Touchpoint) -> str:
    data = tp.data or {}
    for key in ("body", "reason", "status", "url", "provider_message_id", "name"):
        if data.get(key):
            return f"{key}: {str(data[key])[:120]}"
    return ""


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "external_id",
        "email",
        "phone",
        "whatsapp",
        "created_via",
        "created_at",
    )
    list_filter = ("created_via", "preferred_channel", "email_undeliverable", "is_test")
    search_fields = ("external_id", "email", "phone", "whatsapp", "first_name", "last_name")
    readonly_fields = (
        "created_via",
        "created_at",
        "updated_at",
        "last_inbound_whatsapp_at",
        "conversation",
        "timeline",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "external_id",
                    ("first_name", "last_name"),
                    "email",
                    "phone",
                    "whatsapp",
                    "preferred_channel",
                    "locale",
                    "timezone",
                    "attributes",
                )
            },
        ),
        (
            "Deliverability",
            {"fields": ("email_undeliverable", "phone_invalid", "last_inbound_whatsapp_at")},
        ),
        (
            "Test recipient",
            {
                "fields": ("is_test", "test_owner"),
                "description": "Template tests go only to test contacts. Only users allowed "
                "to manage test contacts can change this, or a test contact's addresses.",
            },
        ),
        ("Conversation", {"fields": ("conversation",)}),
        ("Timeline", {"fields": ("timeline",)}),
        ("Record", {"fields": ("created_via", "created_at", "updated_at")}),
    )
    inlines = [ConsentInline, TopicSubscriptionInline, ConsentChangeInline]

    def get_inlines(self, request: HttpRequest, obj: Contact | None):
        # A new contact has no topic choices yet (and its add form keeps its formsets).
        if obj is None:
            return [i for i in self.inlines if i is not TopicSubscriptionInline]
        return self.inlines

    change_form_template = "admin/messaging/contact/change_form.html"
    show_full_result_count = False

    # Who may make a contact a test recipient (and so a target of template tests), or change
    # where an existing test contact's messages go. Read-only fields are not in the form, so a
    # forged POST of them changes nothing.
    _TEST_FIELDS = ("is_test", "test_owner")
    _ADDRESS_FIELDS = ("email", "phone", "whatsapp")

    def has_manage_test_contacts_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("messaging.manage_test_contacts")

    def has_send_message_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("messaging.send_message") and self.has_view_permission(
            request, obj
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Contact | None = None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not self.has_manage_test_contacts_permission(request):
            readonly += self._TEST_FIELDS
            if obj is not None and obj.is_test:
                readonly += self._ADDRESS_FIELDS
        return readonly

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "test_owner":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_via = Contact.CreatedVia.ADMIN
        if not obj.is_test:
            obj.test_owner = None  # only a test contact has an owner (a database constraint)
        super().save_model(request, obj, form, change)

    @admin.display(description="Latest touchpoints")
    def timeline(self, obj: Contact) -> str:
        if not obj.pk:
            return "—"
        touchpoints = list(obj.touchpoints.order_by("-occurred_at", "-id")[:TIMELINE_ROWS])
        link = reverse("touchline-timeline", args=[obj.pk])
        return format_html(
            '{}<p><a href="{}">Full timeline, with filters →</a></p>',
            _timeline_html(touchpoints),
            link,
        )

    @admin.display(description="Messages per channel (both directions, oldest first)")
    def conversation(self, obj: Contact) -> str:
        if not obj.pk:
            return "—"
        recent = list(obj.messages.order_by("-created_at")[:60])[::-1]
        blocks = []
        for channel, label in Contact._meta.get_field("preferred_channel").choices:
            rows = [m for m in recent if m.channel == channel]
            if not rows:
                continue
            items = format_html_join(
                "",
                '<li class="{}"><b>{}</b> {} <span style="color:#666">({} · {})</span></li>',
                (
                    (
                        m.direction,
                        "Customer" if m.direction == Direction.INBOUND else "Touchline",
                        (m.subject + " — " if m.subject else "") + (m.body[:300] or "[template]"),
                        m.created_at.strftime("%Y-%m-%d %H:%M"),
                        m.status,
                    )
                    for m in rows
                ),
            )
            blocks.append(format_html("<h4>{}</h4><ul>{}</ul>", label, items))
        return format_html_join("", "{}", ((b,) for b in blocks)) if blocks else "No messages yet."

    def get_urls(self):
        urls = super().get_urls()
        extra = [
            path(
                "<int:pk>/send/",
                self.admin_site.admin_view(self.send_view),
                name="messaging_contact_send",
            ),
            path(
                "<int:pk>/consent/",
                self.admin_site.admin_view(self.consent_view),
                name="messaging_contact_consent",
            ),
        ]
        return extra + urls

    def send_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        contact = get_object_or_404(Contact, pk=pk)
        if not self.has_send_message_permission(request, contact):
            raise PermissionDenied
        form = SendMessageForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                message, _ = services.message_create(
                    contact=contact,
                    channel=data["channel"],
                    template=data["template"],
                    body=data["body"],
                    subject=data["subject"],
                    source="admin",
                    actor_id=request.user.pk,
                )
            except services.MessageRequestError as exc:
                for field, errors in exc.errors.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                audit_record(
                    actor=request.user,
                    action="send_message",
                    target=contact,
                    request=request,
                    details={"message": str(message.pk), "channel": message.channel},
                )
                level = messages.SUCCESS if message.status != "skipped" else messages.WARNING
                self.message_user(
                    request, f"{message.get_channel_display()} message {message.status}.", level
                )
                return HttpResponseRedirect(
                    reverse("admin:messaging_contact_change", args=[contact.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Send a message to {contact}",
            "contact": contact,
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/messaging/contact/action_form.html", context)

    def consent_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        contact = get_object_or_404(Contact, pk=pk)
        if not self.has_change_permission(request, contact):
            raise PermissionDenied
        form = ConsentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            channel, status = form.cleaned_data["channel"], form.cleaned_data["status"]
            with transaction.atomic():
                changed = services.consent_set(
                    contact=contact,
                    channel=channel,
                    status=status,
                    source="admin",
                    note=form.cleaned_data["note"],
                    actor_id=request.user.pk,
                )
                if changed:
                    ledger = contact.consent_changes.filter(channel=channel).latest("id")
                    audit_record(
                        actor=request.user,
                        action="consent_change",
                        target=contact,
                        before={f"consent.{channel}": ledger.previous_status},
                        after={f"consent.{channel}": status},
                        request=request,
                        details={"consent_change": ledger.pk},
                    )
            self.message_user(request, "Consent updated." if changed else "Consent unchanged.")
            return HttpResponseRedirect(
                reverse("admin:messaging_contact_change", args=[contact.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Set consent for {contact}",
            "contact": contact,
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/messaging/contact/action_form.html", context)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "channel", "updated_at")
    list_filter = ("channel",)
    search_fields = ("name", "slug", "body", "subject")
    actions = ["send_test"]
    # The live preview panel (messaging/staff_views.py) is wired in by this template.
    change_form_template = "admin/messaging/template/change_form.html"
    fields = (
        "name",
        "slug",
        "channel",
        "description",
        "subject",
        "body",
        "html_body",
        "content_sid",
        "content_variables",
    )

    def has_send_test_message_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("messaging.send_test_message") and self.has_view_permission(
            request
        )

    def get_deleted_objects(self, objs, request: HttpRequest):
        # A template a journey still sends is "protected": the delete page and the
        # delete_selected action then refuse, naming the users (the API answers 409).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        protected = list(protected)
        for template in objs:
            users = template_users(slug=template.slug, channel=template.channel)
            protected.extend(f"{template}: used by {user}" for user in users)
        return deleted, counts, perms_needed, protected

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The live preview renders only for template editors; the send box only for testers.
        extra_context = {
            **(extra_context or {}),
            "can_preview": self.has_change_permission(request),
            "can_send_test": self.has_send_test_message_permission(request),
        }
        template = self.get_object(request, object_id) if object_id else None
        if template is not None and extra_context["can_send_test"]:
            extra_context["test_recipients"] = list(
                staff_test_recipients(channel=template.channel)[:50]
            )
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Send a test of the selected template to a test contact",
        permissions=["send_test_message"],
    )
    def send_test(self, request: HttpRequest, queryset: QuerySet[Template]):
        if "apply" in request.POST:
            form = SendTestForm(request.POST)
            if form.is_valid():
                contact = form.cleaned_data["contact"]
                for template in queryset:
                    try:
                        message = staff_test_send(
                            template=template, contact=contact, actor_id=request.user.pk
                        )
                    except services.MessageRequestError as exc:
                        self.message_user(request, f"{template}: {exc.errors}", messages.ERROR)
                    else:
                        self.message_user(request, f"{template}: test message {message.status}.")
                return None
        else:
            form = SendTestForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a test",
            "form": form,
            "templates": queryset,
            "opts": self.model._meta,
            "action": "send_test",
        }
        return render(request, "admin/messaging/template/send_test.html", context)


class MessageTouchpointInline(ReadOnlyInline):
    model = Touchpoint
    fk_name = "message"
    fields = ("occurred_at", "kind", "direction", "data")
    readonly_fields = fields
    ordering = ("occurred_at", "id")
    verbose_name_plural = "Status history"


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "channel",
        "direction",
        "status",
        "contact",
        "to_address",
        "short_body",
    )
    list_filter = ("status", "channel", "direction", "source")
    list_select_related = ("contact",)
    search_fields = ("=id", "=provider_message_id", "to_address", "from_address")
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [MessageTouchpointInline]
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description="Body")
    def short_body(self, obj: Message) -> str:
        return (obj.subject or obj.body or "")[:80]


class JourneyFilter(admin.SimpleListFilter):
    """Touchpoints name their journey in `data` (messaging knows journeys only by slug)."""

    title = "journey"
    parameter_name = "journey"

    def lookups(self, request, model_admin):
        from django.apps import apps

        if not apps.is_installed("journeys"):
            return []
        journey = apps.get_model("journeys", "Journey")
        return [
            (slug, name)
            for slug, name in journey.objects.order_by("slug", "-version")
            .values_list("slug", "name")
            .distinct()
        ]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(data__journey=self.value())
        return queryset


@admin.register(Touchpoint)
class TouchpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "contact", "channel", "direction", "kind", "message", "data")
    list_filter = ("channel", "direction", "kind", JourneyFilter)
    list_select_related = ("contact", "message")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    raw_id_fields = ("contact", "message", "actor")
    readonly_fields = [f.name for f in Touchpoint._meta.fields]


admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "scopes")


@admin.register(ConsentChange)
class ConsentChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The consent ledger: append-only, so read-only here for everyone, superusers too."""

    list_display = (
        "changed_at",
        "contact",
        "channel",
        "topic",
        "previous_status",
        "status",
        "source",
    )
    list_filter = ("channel", "topic", "status", "source")
    list_select_related = ("contact", "topic")
    raw_id_fields = ("contact", "message", "changed_by")
    date_hierarchy = "changed_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in ConsentChange._meta.fields]
    actions = None


# Subscription topics have their own module (kept small); importing it registers them.
from . import topic_admin  # noqa: E402, F401
