"""The product's URLs plus two comparison endpoints served by the same gunicorn:

- `POST /bench/bare/`: a bare DRF view (no authentication, permission or throttle) that parses
  the JSON body and answers 202: the baseline of the event-ingest benchmark.
- `POST /bench/auth-noop/`: the same behind the product's API-key authentication, scope check
  and throttle, to tell their cost from the ingest work; `GET` on it answers an empty 200
  behind the same checks: the fixed cost of any API read (the timeline benchmark's floor).
"""

from __future__ import annotations

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


urlpatterns = [
    path("bench/bare/", BareAccepted.as_view()),
    path("bench/auth-noop/", AuthenticatedAccepted.as_view()),
    *product_urlpatterns,
]
