"""Audit log test helpers: posting admin change forms as a browser would."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.forms import CheckboxInput, MultiWidget

from audit.models import AuditEntry


def _field_values(form, data: dict[str, Any]) -> None:
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        key = form.add_prefix(name)
        if isinstance(field.widget, MultiWidget):
            parts = value if isinstance(value, list) else field.widget.decompress(value)
            for n, part in enumerate(parts):
                data[f"{key}_{n}"] = "" if part is None else str(part)
        elif isinstance(field.widget, CheckboxInput):
            if value:
                data[key] = "on"
        elif value is None:
            data[key] = ""
        elif isinstance(value, list | tuple):
            data[key] = [str(v) for v in value]
        else:
            data[key] = value


def admin_form_data(response, **changes: Any) -> dict[str, Any]:
    """The POST a browser sends for an admin add/change page as shown, with `changes`."""
    assert response.status_code == 200, response.content[:500]
    data: dict[str, Any] = {}
    _field_values(response.context["adminform"].form, data)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for form in formset.forms:
            _field_values(form, data)
    data.update(changes)
    return data


def entries(**filters: Any) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def boss(client, superuser):
    client.force_login(superuser)
    return client


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    for codename in codenames:
        app, _, code = codename.partition(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=code)
        )
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions
