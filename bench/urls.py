"""The product's URLs plus two comparison endpoints served by the same gunicorn:

- `POST /bench/bare/`: a bare DRF view (no authentication, permission or throttle) that parses
  the JSON body and answers 202: the baseline of the event-ingest benchmark.
- `POST /bench/auth-noop/`: the same behind the product's API-key authentication, scope check
  and throttle, to tell their cost from the ingest work; `GET` on it answers an empty 200
  behind the same checks: the fixed cost of any API read (the timeline benchmark's floor).
- `GET /bench/bare-redirect/<token>`: a bare Django view answering the same 302 (and headers)
  as a tracked link's `/l/<token>`, without reading the token: the click benchmark's baseline.
- `GET /bench/link-read/<token>`: the same 302 after the redirect's one indexed read of the
  link (no click recorded): the floor of any request that touches the database.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as product_urlpatterns


class BareAccepted(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def post(self, request: Request) -> Response:
        return Response({"accepted": len(request.data)}, status=202)


class AuthenticatedAccepted(APIView):
    required_scopes = {"POST": "events:write", "GET": "touchpoints:read"}

    def get(self, request: Request) -> Response:
        return Response({})

    def post(self, request: Request) -> Response:
        return Response({"accepted": len(request.data)}, status=202)


REDIRECT_TO = "https://shop.example.com/cart/1?utm_source=touchline&utm_medium=email"


def _redirect(url: str) -> HttpResponse:
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def bare_redirect(request: HttpRequest, token: str) -> HttpResponse:
    return _redirect(REDIRECT_TO)


def link_read(request: HttpRequest, token: str) -> HttpResponse:
    from messaging.links import CLICK_FIELDS, link_id_from_token
    from messaging.models import TrackedLink

    link_id = link_id_from_token(token)
    link = (
        TrackedLink.objects.select_related("message", "message__template")
        .only(*CLICK_FIELDS)
        .filter(pk=link_id)
        .first()
        if link_id
        else None
    )
    return _redirect(link.url if link else REDIRECT_TO)


urlpatterns = [
    path("bench/bare/", BareAccepted.as_view()),
    path("bench/bare-redirect/<str:token>", bare_redirect),
    path("bench/link-read/<str:token>", link_read),
    path("bench/auth-noop/", AuthenticatedAccepted.as_view()),
    *product_urlpatterns,
]
