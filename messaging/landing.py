"""`/`: a small page that tells a visitor where things are (the admin, the API docs, the
simulator on the embedded default) instead of Django's 404."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    simulated = settings.TWILIO_SIMULATED or settings.SENDGRID_SIMULATED
    return render(
        request,
        "landing.html",
        {"simulator_url": settings.SIMULATOR_URL if simulated else ""},
    )
