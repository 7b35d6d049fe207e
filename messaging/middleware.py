"""Request guards that must act before a view reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


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
            if length > settings.API_MAX_BODY_BYTES:
                return JsonResponse(
                    {
                        "type": "client_error",
                        "errors": [
                            {
                                "code": "request_too_large",
                                "detail": f"The request body is over "
                                f"{settings.API_MAX_BODY_BYTES} bytes.",
                                "attr": None,
                            }
                        ],
                    },
                    status=413,
                )
        return self.get_response(request)
