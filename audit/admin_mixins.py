"""Auditing every admin write: add, change (with a field diff), delete, inline rows, and
each run of an admin action.

The hooks are the ones Django's admin calls after a write, not `save_model`, which admins
override (some without calling super). `audit_every_model_admin` mixes this into every
registered ModelAdmin at start-up.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponseBase

from .models import AuditEntry
from .services import (
    Target,
    audit_capture_created,
    audit_diff,
    audit_entry_build,
    audit_record,
    audit_refs,
    audit_snapshot,
)


class ReadOnlyAdminMixin:
    """An admin for a log: anyone with view permission may read it; nobody, superusers
    included, may add, change or delete a row through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_BEFORE = "_audit_before"


def _key(obj: models.Model) -> tuple[str, str]:
    return obj._meta.label_lower, str(obj.pk)


def _stored(obj: models.Model) -> models.Model:
    """The row as the database has it now (an admin's save_model may have saved it through
    a service rather than from `obj`)."""
    return type(obj)._default_manager.filter(pk=obj.pk).first() or obj


class AuditedAdminMixin:
    """Records admin writes in the audit log; put it first among a ModelAdmin's bases."""

    # Actions audited by other hooks (delete_selected goes through log_deletions).
    audit_skip_actions: tuple[str, ...] = ("delete_selected",)

    def audit_change_action(self, before: dict[str, Any], after: dict[str, Any]) -> str:
        """The action name of a saved change (e.g. an API key's `revoked` set: "revoke")."""
        if not before.get("revoked") and after.get("revoked") is True:
            return "revoke"
        return "change"

    # --- add / change / delete through the change form --------------------------------

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # The form changes `obj` in place before saving: keep the stored state now.
            if not hasattr(request, _BEFORE):
                setattr(request, _BEFORE, {})
            getattr(request, _BEFORE)[_key(obj)] = audit_snapshot(obj)
        return obj

    def log_addition(self, request: HttpRequest, obj: models.Model, message: Any):
        result = super().log_addition(request, obj, message)
        stored = _stored(obj)
        audit_record(
            actor=request.user,
            action="create",
            target=stored,
            after=audit_snapshot(stored),
            request=request,
        )
        return result

    def log_change(self, request: HttpRequest, obj: models.Model, message: Any):
        result = super().log_change(request, obj, message)
        before = getattr(request, _BEFORE, {}).pop(_key(obj), None)
        stored = _stored(obj)
        after = audit_snapshot(stored)
        if before is None or audit_diff(before, after):
            audit_record(
                actor=request.user,
                action=self.audit_change_action(before or {}, after),
                target=stored,
                before=before,
                after=after,
                request=request,
            )
        return result

    def log_deletions(self, request: HttpRequest, queryset):
        result = super().log_deletions(request, queryset)
        for obj in queryset:  # called before the rows are deleted
            audit_record(
                actor=request.user,
                action="delete",
                target=obj,
                before=audit_snapshot(obj),
                request=request,
            )
        return result

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Inline rows (a journey's steps): one entry per row added, changed or deleted."""
        pks = [f.instance.pk for f in formset.initial_forms if f.instance.pk is not None]
        stored = {
            pk: audit_snapshot(o) for pk, o in formset.model._default_manager.in_bulk(pks).items()
        }
        super().save_formset(request, form, formset, change)
        parent = {"parent": audit_refs([form.instance])[0]}
        for obj in formset.new_objects:
            audit_record(
                actor=request.user,
                action="create",
                target=obj,
                after=audit_snapshot(obj),
                request=request,
                details=parent,
            )
        for obj, _fields in formset.changed_objects:
            after = audit_snapshot(obj)
            before = stored.get(obj.pk)
            if before is None or audit_diff(before, after):
                audit_record(
                    actor=request.user,
                    action="change",
                    target=obj,
                    before=before,
                    after=after,
                    request=request,
                    details=parent,
                )
        for obj in formset.deleted_objects:
            audit_record(
                actor=request.user,
                action="delete",
                target=Target(obj._meta.label_lower, str(obj.pk or ""), str(obj)[:255]),
                before=stored.get(obj.pk) or audit_snapshot(obj),
                request=request,
                details=parent,
            )

    # --- actions -------------------------------------------------------------------------

    def get_actions(self, request: HttpRequest) -> dict[str, tuple[Callable, str, str]]:
        actions = super().get_actions(request)  # already filtered by the user's permissions
        return {
            name: (func if name in self.audit_skip_actions else _audited(func, name), n, desc)
            for name, (func, n, desc) in actions.items()
        }


def _audited(func: Callable, name: str) -> Callable:
    """Run an admin action and record one entry per selected object: the action's name, the
    fields it changed, and what the run created (a test message, a journey's new version).

    A run that only shows an intermediate page (a form, a confirmation) and changes nothing
    is not recorded."""

    @functools.wraps(func)
    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset):
        selected = list(queryset.all())  # a copy: the action's own queryset stays unevaluated
        before = {o.pk: audit_snapshot(o) for o in selected}
        with audit_capture_created() as created:
            try:
                response = func(modeladmin, request, queryset)
            except Exception:
                # What the run did before failing is recorded too; the error is what the
                # caller sees, even if recording fails as well (a broken transaction).
                with contextlib.suppress(Exception):
                    _record_run(request, name, queryset, selected, before, created, failed=True)
                raise
        shown_page = isinstance(response, HttpResponseBase) and not (
            300 <= response.status_code < 400
        )
        _record_run(request, name, queryset, selected, before, created, shown_page=shown_page)
        return response

    return run


def _record_run(
    request: HttpRequest,
    name: str,
    queryset,
    selected: list[models.Model],
    before: dict[Any, dict[str, Any]],
    created: list[models.Model],
    *,
    failed: bool = False,
    shown_page: bool = False,
) -> None:
    now = queryset.model._default_manager.in_bulk(list(before))
    after = {pk: audit_snapshot(now[pk]) if pk in now else None for pk in before}
    changed = any(audit_diff(before[pk], after[pk]) for pk in before)
    if not (changed or created) and (failed or shown_page):
        return
    details: dict[str, Any] = {"selected": len(selected)}
    if created:
        details["created"] = audit_refs(created)
    if failed:
        details["failed"] = True
    # One entry per object, inserted together: "select all" may pick thousands.
    AuditEntry.objects.bulk_create(
        [
            audit_entry_build(
                actor=request.user,
                action=name,
                target=now.get(obj.pk, obj),
                before=before[obj.pk],
                after=after[obj.pk],
                request=request,
                details=details,
            )
            for obj in selected
        ],
        batch_size=500,
    )


def audit_every_model_admin(site: admin.AdminSite = admin.site) -> None:
    """Re-register each ModelAdmin of `site` as a subclass with AuditedAdminMixin first."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, AuditedAdminMixin) or getattr(model_admin, "audit_skip", False):
            continue
        cls = type(model_admin)
        audited = type(
            f"Audited{cls.__name__}", (AuditedAdminMixin, cls), {"__module__": cls.__module__}
        )
        site.unregister(model)
        site.register(model, audited)
