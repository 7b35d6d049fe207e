"""OpenAPI description of the API key authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_standardized_errors.openapi import AutoSchema


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "messaging.api_auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Authorization: Api-Key <key>` — create keys with "
            "`manage.py create_api_key NAME --scopes …` or in the admin.",
        }


ERROR_ITEM = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "attr": {"type": "string", "nullable": True},
    },
    "required": ["code", "detail", "attr"],
}


# Django derives integer bounds from the database backend (SQLite's differ from
# PostgreSQL's): they would make the committed schema depend on where it was generated.
_BACKEND_BOUNDS = {2**15 - 1, -(2**15), 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)}


def _drop_backend_int_range(prop: dict) -> None:
    if prop.get("type") != "integer":
        return
    for bound in ("minimum", "maximum"):
        if prop.get(bound) in _BACKEND_BOUNDS:
            del prop[bound]
    if prop.get("format") == "int64":
        del prop["format"]


def open_error_enums(result, generator, request, public):
    """drf-standardized-errors documents each operation's errors as a oneOf of per-field
    schemas with enumerated `attr`/`code` (list items as `field.INDEX`); real answers say
    `field.0` and carry our own codes (unknown_field, …). Keep the error envelope documented
    but describe each error item once: a code, a detail and the field path."""
    schemas = result.get("components", {}).get("schemas", {})
    schemas["Error"] = ERROR_ITEM
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            _drop_backend_int_range(prop)
    for schema in schemas.values():
        errors = schema.get("properties", {}).get("errors")
        if errors and errors.get("type") == "array":
            errors["items"] = {"$ref": "#/components/schemas/Error"}
    return result


class TouchlineAutoSchema(AutoSchema):
    """drf-standardized-errors' schema, also documenting the validation 400 every operation
    can answer: NUL bytes or lone surrogates in a path parameter, a query parameter or a
    header are refused with the field path (messaging.middleware.UnsafeTextMiddleware), as
    is an invalid query parameter of a list."""

    def _should_add_validation_error_response(self) -> bool:
        return True
