"""Column mapping: which contact field, typed attribute or channel consent each CSV column
fills, and turning one cell into that target's value (or a message saying why not)."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.core.validators import validate_email

from channels_app.channels import Channel
from messaging.input_rules import text_problem
from messaging.models import ConsentStatus

from .phones import phone_cell

# The contact fields a column can fill, with their longest accepted value.
FIELDS: dict[str, int] = {
    "external_id": 255,
    "email": 254,
    "phone": 20,
    "whatsapp": 20,
    "first_name": 150,
    "last_name": 150,
    "locale": 35,
    "timezone": 64,
    "preferred_channel": 16,
}
KEYS = ("external_id", "email", "phone")  # upsert keys, in the order they are tried
ATTRIBUTE_TYPES = ("string", "number", "boolean", "date")
IGNORE = "ignore"
MAX_ATTRIBUTE_TEXT = 1000
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
_SUBSCRIBED = frozenset({"subscribed", "yes", "y", "true", "1", "opted_in", "opt-in", "in"})
_UNSUBSCRIBED = frozenset({"unsubscribed", "no", "n", "false", "0", "opted_out", "opt-out", "out"})
_INTEGER = re.compile(r"[+-]?\d{1,18}")


class CellError(ValueError):
    """A cell that cannot be imported; the message is shown in the error report."""


@dataclass(frozen=True)
class Target:
    kind: str  # "field" | "attribute" | "consent" | "ignore"
    name: str = ""  # field name, attribute key or channel
    type: str = "string"  # attributes only

    def spelled(self) -> str:
        if self.kind == "field":
            return self.name
        if self.kind == "attribute":
            return f"attributes.{self.name}:{self.type}"
        if self.kind == "consent":
            return f"consent.{self.name}"
        return IGNORE


def parse_target(text: Any) -> Target:
    """`email`, `attributes.plan` (string), `attributes.orders:number`, `consent.sms` or
    `ignore`; raise CellError (with the accepted forms) otherwise."""
    if not isinstance(text, str):
        raise CellError("A target is a string such as “email” or “attributes.plan:number”.")
    spelled = text.strip()
    lowered = spelled.lower()
    if lowered in ("", IGNORE):
        return Target("ignore")
    if lowered in FIELDS:
        return Target("field", lowered)
    if lowered.startswith("attributes."):
        name, _, kind = spelled[len("attributes.") :].partition(":")
        kind = (kind or "string").lower()
        if not _ATTRIBUTE_NAME.fullmatch(name) or "__" in name:
            raise CellError(
                f"“{name}” is not an attribute name (letters, digits, single _; a letter first)."
            )
        if kind not in ATTRIBUTE_TYPES:
            raise CellError(f"Attribute type “{kind}”: choose {', '.join(ATTRIBUTE_TYPES)}.")
        return Target("attribute", name, kind)
    if lowered.startswith("consent."):
        channel = lowered[len("consent.") :]
        if channel not in Channel.values:
            raise CellError(f"Consent channel “{channel}”: choose {', '.join(Channel.values)}.")
        return Target("consent", channel)
    raise CellError(
        f"Unknown target “{spelled}”: use a contact field ({', '.join(FIELDS)}), "
        "attributes.<name>[:string|number|boolean|date], consent.<channel> or ignore."
    )


def effective_mapping(
    columns: list[str], mapping: dict[str, Any] | None
) -> tuple[dict[str, Target], dict[str, list[str]]]:
    """Each column's target (given in `mapping`, else guessed from its header: a field name,
    `attributes.x[:type]` or `consent.channel`) and errors by column (unknown columns, bad
    targets, two columns on one target, no upsert key). `""` holds file-level errors."""
    mapping = mapping or {}
    errors: dict[str, list[str]] = {}
    targets: dict[str, Target] = {}
    if not isinstance(mapping, dict):
        return {}, {"mapping": ["The mapping is an object: {column: target}."]}
    if not columns:
        return {}, {"": ["The file has no header row."]}
    seen_columns: set[str] = set()
    for column in columns:
        if column in seen_columns:
            errors.setdefault(column, []).append("This column appears twice in the header.")
        seen_columns.add(column)
    for column in mapping:
        if column not in seen_columns:
            errors.setdefault(column, []).append("The mapping names a column the file lacks.")
    for column in columns:
        try:
            if column in mapping:
                targets[column] = parse_target(mapping[column])
            else:
                targets[column] = parse_target(column)
        except CellError as exc:
            message = (
                str(exc)
                if column in mapping
                else ("Unknown column: map it to a field, an attribute or consent, or to “ignore”.")
            )
            errors.setdefault(column, []).append(message)
    used: dict[str, str] = {}
    for column, target in targets.items():
        if target.kind == "ignore":
            continue
        key = f"{target.kind}:{target.name}"
        if key in used:
            errors.setdefault(column, []).append(
                f"“{used[key]}” already maps to {target.spelled()}."
            )
        used.setdefault(key, column)
    if not any(t.kind == "field" and t.name in KEYS for t in targets.values()):
        errors.setdefault("", []).append(
            "No column maps to external_id, email or phone: rows could not be matched."
        )
    return targets, errors


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def convert(target: Target, raw: str) -> Any:
    """The value `raw` (a non-empty, stripped cell) gives `target`; CellError if none."""
    problem = text_problem(raw)
    if problem:
        raise CellError(problem)
    return converter(target)(raw)


def converter(target: Target) -> Callable[[str], Any]:
    """`convert(target, ·)` without the text check (the caller makes it: text_problem), its
    path chosen once per column instead of once per cell."""
    if target.kind == "field":
        return functools.partial(_FIELD_CHECKS.get(target.name, _plain), FIELDS[target.name])
    if target.kind == "attribute":
        return functools.partial(_attribute, target.type)
    return _consent


def _consent(raw: str) -> str:
    lowered = raw.lower()
    if lowered in _SUBSCRIBED:
        return ConsentStatus.SUBSCRIBED.value
    if lowered in _UNSUBSCRIBED:
        return ConsentStatus.UNSUBSCRIBED.value
    raise CellError(f"“{raw[:40]}” is not a consent: use subscribed or unsubscribed (yes/no).")


def _too_long(limit: int) -> CellError:
    return CellError(f"Longer than {limit} characters.")


def _plain(limit: int, raw: str) -> str:
    if len(raw) > limit:
        raise _too_long(limit)
    return raw


def _email(limit: int, raw: str) -> str:
    if len(raw) > limit:
        raise _too_long(limit)
    value = raw.lower()
    if not email_ok(value):
        raise CellError(f"“{raw[:60]}” is not an email address.")
    return value


def _phone(limit: int, raw: str) -> str:
    if len(raw) > limit:
        raise _too_long(limit)
    value, problem = phone_cell(raw)  # = normalize_phone, quicker (phones.py)
    if problem:
        raise CellError(f"“{raw[:30]}”: {problem}")
    return value


def _timezone(limit: int, raw: str) -> str:
    if len(raw) > limit:
        raise _too_long(limit)
    if raw not in _timezones():
        raise CellError(f"“{raw[:64]}” is not an IANA time zone (e.g. Europe/Paris).")
    return raw


def _preferred_channel(limit: int, raw: str) -> str:
    if len(raw) > limit:
        raise _too_long(limit)
    value = raw.lower()
    if value not in Channel.values:
        raise CellError(f"Choose one of {', '.join(Channel.values)}.")
    return value


_FIELD_CHECKS: dict[str, Callable[[int, str], str]] = {
    "email": _email,
    "phone": _phone,
    "whatsapp": _phone,
    "timezone": _timezone,
    "preferred_channel": _preferred_channel,
}

# Django's validate_email, its steps taken here so that the domain check (the costly regex)
# runs once per domain: EmailValidator.__call__ of Django 5.2, same regexes and allowlist.
# tests/audiences/test_import_phones.py compares the two.
# (compiled here: Django's are lazy objects, a proxy call each time)
_EMAIL_USER = re.compile(validate_email.user_regex.pattern, validate_email.user_regex.flags)
_EMAIL_ALLOWED = frozenset(validate_email.domain_allowlist)


def email_ok(value: str) -> bool:
    """validate_email(value) passes."""
    if not value or "@" not in value or len(value) > 320:
        return False
    user_part, domain_part = value.rsplit("@", 1)
    if not _EMAIL_USER.match(user_part):
        return False
    return domain_part in _EMAIL_ALLOWED or _email_domain_ok(domain_part)


@lru_cache(maxsize=65536)
def _email_domain_ok(domain: str) -> bool:
    return bool(validate_email.validate_domain_part(domain))


def _attribute(kind: str, raw: str) -> Any:
    if kind == "string":
        if len(raw) > MAX_ATTRIBUTE_TEXT:
            raise CellError(f"Longer than {MAX_ATTRIBUTE_TEXT} characters.")
        return raw
    if kind == "number":
        if _INTEGER.fullmatch(raw):
            return int(raw)
        try:
            number = float(raw)
        except ValueError:
            raise CellError(f"“{raw[:40]}” is not a number (use 1234.5, no separators).") from None
        if not math.isfinite(number):
            raise CellError("Numbers must be finite.")
        return number
    if kind == "boolean":
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise CellError(f"“{raw[:40]}” is not a boolean (true/false, yes/no, 1/0).")
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise CellError(f"“{raw[:40]}” is not a date (YYYY-MM-DD).") from None
