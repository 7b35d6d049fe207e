"""Request guards that must act before a view reads the body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.urls import Resolver404, resolve

from .input_rules import text_problem

UPLOAD_PATHS = frozenset({"/api/v1/imports/", "/api/v1/imports"})


class ApiBodySizeLimitMiddleware:
    """API bodies over API_MAX_BODY_BYTES get a 413 in the API's error format, before any
    parsing (Django alone would answer a bare 400)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            # CSV uploads are streamed to disk by the upload handlers: their own, larger limit.
            limit = (
                settings.IMPORT_MAX_UPLOAD_BYTES
                if request.path in UPLOAD_PATHS and request.method == "POST"
                else settings.API_MAX_BODY_BYTES
            )
            if length > limit:
                return JsonResponse(
                    {
                        "type": "client_error",
                        "errors": [
                            {
                                "code": "request_too_large",
                                "detail": f"The request body is over {limit} bytes.",
                                "attr": None,
                            }
                        ],
                    },
                    status=413,
                )
        return self.get_response(request)


def api_error(status: int, code: str, detail: str, attr: str | None = None) -> JsonResponse:
    """An error in the API's format (drf-standardized-errors), for answers given outside DRF."""
    kind = "validation_error" if status == 400 and attr else "client_error"
    return JsonResponse(
        {"type": kind, "errors": [{"code": code, "detail": detail, "attr": attr}]}, status=status
    )


class ApiPathMiddleware:
    """Every /api/ path answers JSON: a path missing its trailing slash is served as if it had
    one (no redirect, which a POST cannot follow), and an unknown path is a JSON 404."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith("/api/"):
            return self.get_response(request)
        if not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not _resolves(path, urlconf) and _resolves(path + "/", urlconf):
                request.path_info = path + "/"
                request.path = request.path + "/"
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            # Django's own 404 page: no route matched (the API's views answer JSON 404s).
            return api_error(404, "not_found", f"There is no API endpoint at {path}.")
        return response


def _resolves(path: str, urlconf: str | None) -> bool:
    try:
        resolve(path, urlconf)
    except Resolver404:
        return False
    return True


class UnsafeTextMiddleware:
    """NUL bytes and lone surrogates in a URL path parameter, a query parameter or a header
    are refused with a 400 naming it, on every endpoint (admin and webhooks too): PostgreSQL
    would fail on them deep inside a query. JSON bodies get the same rule from the API's
    parser (messaging.parsers)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        found = _unsafe_text(request, view_args, view_kwargs)
        if found is None:
            return None
        where, name, problem = found
        if request.path_info.startswith("/api/"):
            return api_error(400, "invalid", f"{where} {name!r}: {problem}", name)
        return HttpResponseBadRequest(
            f"{where} {name!r}: {problem}", content_type="text/plain; charset=utf-8"
        )


def _unsafe_text(
    request: HttpRequest, view_args: tuple[Any, ...], view_kwargs: dict[str, Any]
) -> tuple[str, str, str] | None:
    for name, value in view_kwargs.items():
        problem = text_problem(str(value))
        if problem:
            return "URL parameter", name, problem
    for index, value in enumerate(view_args):
        problem = text_problem(str(value))
        if problem:
            return "URL parameter", str(index), problem
    for name, values in request.GET.lists():
        problem = text_problem(name) or next(filter(None, map(text_problem, values)), None)
        if problem:
            return "Query parameter", name, problem
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return "Header", key[5:].replace("_", "-").title(), problem
    return None
