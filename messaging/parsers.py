"""The API's one JSON parser (REST_FRAMEWORK DEFAULT_PARSER_CLASSES): input rules for every
endpoint's body in one place, not per view."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from .input_rules import JsonInputError, check_json


class SafeJSONParser(JSONParser):
    """JSON that PostgreSQL can store and Python can walk: bounded nesting, no NUL bytes and
    no lone surrogates in any key or value, only finite numbers. Refusals are 400s naming the
    field path."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        max_depth = settings.API_MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The C decoder gives up long before a 100k-deep document is built.
            raise exceptions.ParseError(
                f"JSON parse error - nested more than {max_depth} levels deep (API_MAX_JSON_DEPTH)."
            ) from None
        try:
            check_json(data, max_depth=max_depth)
        except JsonInputError as exc:
            if not exc.path:
                raise exceptions.ParseError(f"JSON parse error - {exc.message}") from None
            raise exceptions.ValidationError({".".join(exc.path): [exc.message]}) from None
        return data
