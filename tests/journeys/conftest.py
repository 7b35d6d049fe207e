"""Journey test helpers: blueprints, firing events through the API, signed replies."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from journeys.api import EventOutput
from journeys.blueprints import install_blueprints
from journeys.models import Event


@pytest.fixture
def blueprints(db):
    install_blueprints(activate=True)


@pytest.fixture
def fire(api, django_capture_on_commit_callbacks):
    """POST an event; its on-commit work (applying the event, advancing, delivering) runs
    inline (eager Celery). Returns the event as a replay of its key would show it then."""

    def _fire(name, contact, properties=None, key=None, status=202):
        payload = {"name": name, "contact": contact, "properties": properties or {}}
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/v1/events/", payload, format="json", **headers)
        assert response.status_code == status, response.content
        if status != 202:
            return response.json()
        accepted = response.json()
        # The answer comes before the event is applied (a worker does it after commit).
        assert accepted["processed_at"] is None
        assert accepted["enrolled"] == [] and accepted["resumed"] == []
        return EventOutput(Event.objects.get(pk=accepted["id"])).data

    return _fire


@pytest.fixture
def reply_sms(client, django_capture_on_commit_callbacks):
    """A customer's SMS reply through the signed Twilio inbound webhook."""
    counter = iter(range(10_000))

    def _reply(phone, body, whatsapp=False):
        params = {
            "MessageSid": f"SMtest{next(counter):026d}",
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "From": f"whatsapp:{phone}" if whatsapp else phone,
            "To": settings.TWILIO_SMS_FROM,
            "Body": body,
            "NumMedia": "0",
        }
        url = f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/inbound/"
        signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/webhooks/twilio/inbound/",
                urlencode(params),
                content_type="application/x-www-form-urlencoded",
                HTTP_X_TWILIO_SIGNATURE=signature,
            )
        assert response.status_code == 200, response.content
        return response

    return _reply


@pytest.fixture
def run_due(django_capture_on_commit_callbacks):
    """Advance everything due at the (possibly travelled) current time, inline."""
    from journeys import engine

    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            return engine.run_due()

    return _run
