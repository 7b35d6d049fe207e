"""A JSON model field for what staff type into the admin: the API's input rules hold for
form input too, and a refused value is shown back as typed, never as a 500."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.fields import InvalidJSONInput

from .input_rules import JsonInputError, check_json, text_problem, validate_safe_json


def _problem(value: Any) -> str | None:
    try:
        check_json(value, max_depth=settings.API_MAX_JSON_DEPTH)
    except JsonInputError as exc:
        where = ".".join(exc.path)
        return f"{where}: {exc.message}" if where else exc.message
    return None


class SafeJSONFormField(forms.JSONField):
    """Refuses NUL bytes, lone surrogates, numbers that are not finite and absurd nesting
    with a form error; a refused value is redisplayed as the text that was typed (Django's
    own field would print the decoded lone surrogate into the page and fail to encode it)."""

    def to_python(self, value: Any) -> Any:
        converted = super().to_python(value)
        problem = _problem(converted)
        if problem:
            raise ValidationError(problem, code="invalid")
        return converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        bound = super().bound_data(data, initial)
        if not isinstance(bound, InvalidJSONInput) and data is not None and _problem(bound):
            return InvalidJSONInput(data)
        return bound

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        text = json.dumps(value, ensure_ascii=False, cls=self.encoder)
        # A lone surrogate could not be encoded into the page: escape (only) then.
        if text_problem(text):
            return json.dumps(value, ensure_ascii=True, cls=self.encoder)
        return text


class SafeJSONField(models.JSONField):
    """models.JSONField with validate_safe_json and SafeJSONFormField in forms."""

    default_validators = [validate_safe_json]

    def formfield(self, **kwargs: Any) -> forms.Field:
        return super().formfield(**{"form_class": SafeJSONFormField, **kwargs})
