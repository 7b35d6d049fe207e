"""Recording staff actions: `audit_record` is the one way an entry is written
(`audit_entry_build` is the same entry unsaved, for the admin's bulk insert of an action run).

Admin saves, deletes and actions are recorded by `admin_mixins.AuditedAdminMixin`; staff
views, the API and management commands call `audit_record` themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import post_save
from django.http import HttpRequest
from rest_framework_api_key.models import AbstractAPIKey

from .models import AuditEntry

HIDDEN = "[hidden]"
PERSONAL = "[personal data]"
# Values of fields whose name contains one of these are never written to the log.
SECRET_NAME_PARTS = ("secret", "password", "hashed_key", "token")
# A customer's personal data stays out of the log (it cannot be erased from an append-only
# table): a change is recorded by field name, without the values.
PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "messaging.contact": frozenset(
        {"email", "phone", "whatsapp", "first_name", "last_name", "attributes", "external_id"}
    ),
    "messaging.message": frozenset(
        {"to_address", "from_address", "subject", "body", "html_body", "media", "metadata"}
    ),
    "messaging.consentchange": frozenset({"note"}),
    "messaging.touchpoint": frozenset({"data"}),
    "journeys.enrollment": frozenset({"context", "exit_reason"}),
    "journeys.event": frozenset({"properties", "result"}),
    "journeys.surveyresponse": frozenset({"raw_answer", "choice"}),
}
# Objects whose str() shows a customer's name or address are labelled by type and id.
LABEL_BY_ID = frozenset(
    {
        "messaging.contact",
        "messaging.message",
        "messaging.conversation",
        "messaging.consent",
        "messaging.consentchange",
        "messaging.touchpoint",
        "journeys.enrollment",
        "journeys.surveyresponse",
        "journeys.event",
    }
)
# Rows that actions create as a by-product and that say nothing about what was done.
NOT_CAPTURED = frozenset(
    {"messaging.touchpoint", "audit.auditentry", "admin.logentry", "sessions.session"}
)
MAX_CAPTURED = 50


class Target(NamedTuple):
    """What an entry is about when it is not a model instance (or no longer exists)."""

    type: str
    id: str = ""
    label: str = ""


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=_Encoder))


def audit_snapshot(obj: models.Model) -> dict[str, Any]:
    """The stored fields of `obj` as JSON values (foreign keys as ids; `auto_now` stamps and
    reverse relations left out), for `before`/`after`."""
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if getattr(field, "auto_now", False):
            continue
        data[field.name] = field.value_from_object(obj)
    if isinstance(obj, AbstractAPIKey):
        data["id"] = obj.prefix  # the primary key embeds the key's hash
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            data[field.name] = sorted(str(o.pk) for o in field.value_from_object(obj))
    return _json(data)


def audit_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list]:
    """{field: [before, after]} for every field whose value differs."""
    before, after = before or {}, after or {}
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def audit_label(obj: models.Model) -> str:
    label = obj._meta.label_lower
    if label in LABEL_BY_ID:
        return f"{obj._meta.verbose_name} #{obj.pk}"
    return str(obj)[:255]


def _target(target: models.Model | Target) -> Target:
    if isinstance(target, Target):
        return target
    pk = target.prefix if isinstance(target, AbstractAPIKey) else target.pk
    return Target(
        type=target._meta.label_lower,
        id="" if pk is None else str(pk),
        label=audit_label(target),
    )


def _actor(
    actor: AbstractBaseUser | models.Model | str | None, request: HttpRequest | None
) -> tuple[str, str, str]:
    if actor is None and request is not None:
        auth = getattr(request, "auth", None)  # a DRF request: the API key
        actor = auth if isinstance(auth, models.Model) else getattr(request, "user", None)
    if isinstance(actor, str):
        return AuditEntry.ActorKind.SYSTEM, "", actor[:255]
    if actor is None or getattr(actor, "is_anonymous", False):
        return AuditEntry.ActorKind.SYSTEM, "", "system"
    if isinstance(actor, AbstractBaseUser):
        return AuditEntry.ActorKind.USER, str(actor.pk), actor.get_username()[:255]
    prefix = getattr(actor, "prefix", None)
    if prefix is not None:  # an API key: its public prefix identifies it, never its hash
        return AuditEntry.ActorKind.API_KEY, prefix, f"{actor.name} ({prefix})"[:255]
    raise TypeError(f"Unknown audit actor: {actor!r}")


def _redact(object_type: str, changes: dict[str, list]) -> dict[str, list]:
    personal = PERSONAL_FIELDS.get(object_type, frozenset())
    redacted = {}
    for key, values in changes.items():
        if any(part in key.lower() for part in SECRET_NAME_PARTS):
            values = [None if v in (None, "") else HIDDEN for v in values]
        elif key in personal:
            values = [None if v in (None, "") else PERSONAL for v in values]
        redacted[key] = values
    return redacted


def _request_context(request: HttpRequest | None) -> dict[str, Any]:
    if request is None:
        return {}
    meta = getattr(request, "META", {})
    return {
        "method": request.method,
        "path": request.path[:500],
        "ip": meta.get("REMOTE_ADDR", ""),
    }


def audit_record(
    *,
    actor: AbstractBaseUser | models.Model | str | None,
    action: str,
    target: models.Model | Target,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry: `actor` (a user, an API key, a string naming a system process, or
    None to take it from `request`) did `action` to `target`; `before`/`after` are field
    dicts (`audit_snapshot`) whose differences are stored; `details` adds context.

    Secret values are never stored, and a customer's personal data only by field name."""
    entry = audit_entry_build(
        actor=actor,
        action=action,
        target=target,
        before=before,
        after=after,
        request=request,
        details=details,
    )
    entry.save()
    return entry


def audit_entry_build(
    *,
    actor: AbstractBaseUser | models.Model | str | None,
    action: str,
    target: models.Model | Target,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """The unsaved entry `audit_record` writes (for a bulk insert of many at once)."""
    kind, actor_id, actor_label = _actor(actor, request)
    what = _target(target)
    context = _request_context(request)
    if details:
        context["details"] = _json(details)
    return AuditEntry(
        actor_kind=kind,
        actor_id=actor_id,
        actor_label=actor_label,
        action=action[:64],
        object_type=what.type[:100],
        object_id=what.id[:64],
        object_label=what.label[:255],
        changes=_redact(what.type, audit_diff(_json(before), _json(after))),
        context=context,
    )


# --- What an action created --------------------------------------------------------------

_capture: contextvars.ContextVar[list[models.Model] | None] = contextvars.ContextVar(
    "audit_capture", default=None
)


@contextlib.contextmanager
def audit_capture_created() -> Iterator[list[models.Model]]:
    """Collect the rows saved for the first time (save(), create()) in this context, e.g.
    the message a test send queued or the copy "new version" made. Other threads' saves
    are not collected; bulk_create is not seen."""
    bucket: list[models.Model] = []
    token = _capture.set(bucket)

    def collect(sender, instance, created, raw=False, **kwargs) -> None:
        if not created or raw or _capture.get() is not bucket:
            return
        if sender._meta.label_lower not in NOT_CAPTURED and len(bucket) < MAX_CAPTURED:
            bucket.append(instance)

    uid = f"audit-capture-{uuid.uuid4().hex}"
    post_save.connect(collect, weak=False, dispatch_uid=uid)
    try:
        yield bucket
    finally:
        post_save.disconnect(dispatch_uid=uid)
        _capture.reset(token)


def audit_refs(objects: list[models.Model]) -> list[dict[str, str]]:
    """Type, id and label of each object, for `details`."""
    return [{"type": t.type, "id": t.id, "label": t.label} for t in map(_target, objects)]
