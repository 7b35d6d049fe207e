"""`GET /l/<token>`: a tracked link's redirect. No session, no template: one read, one insert."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.views.decorators.http import require_safe

from .links import link_click

NOT_FOUND_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    "<p>This link is not valid or has expired.</p></html>"
)


@require_safe
def link_redirect(request: HttpRequest, token: str) -> HttpResponse:
    target = link_click(
        token=token,
        method=request.method or "GET",
        user_agent=request.headers.get("User-Agent", ""),
    )
    if target is None:
        return HttpResponseNotFound(NOT_FOUND_PAGE)
    response = HttpResponseRedirect(target)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
