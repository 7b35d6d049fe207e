"""Shared fixtures: the provider simulator (real SDKs talk to it), API clients, Celery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from channels_app.providers.registry import reset_providers
from channels_app.simulator import SimulatorConfig, start_simulator
from config.celery import app as celery_app
from messaging.api_auth import ALL_SCOPES
from messaging.models import ApiKey


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    """Tasks queued by code under test run inline unless a test starts a real worker."""
    # With the "CELERY_" settings namespace, Celery reads the prefixed key first.
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
    yield
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False


@pytest.fixture(autouse=True)
def _no_sender_rate_limits(settings) -> None:
    """Rate limits are tested on their own (tests/channels_app/test_ratelimit.py); elsewhere a
    bucket filled by one test (or moved by time travel) must not slow another."""
    from channels_app import ratelimit

    settings.SENDER_RATE_LIMITS = {"sms": 0.0, "whatsapp": 0.0, "email": 0.0}
    ratelimit._local = ratelimit._LocalBuckets()


@pytest.fixture(autouse=True)
def _no_auth_failure_throttle(settings) -> None:
    """The failed-authentication throttle is tested on its own
    (tests/messaging/test_api_auth_failures.py); elsewhere every test client is 127.0.0.1,
    and one test's refused keys must not get another's a 429."""
    settings.API_AUTH_FAILURE_LIMIT = 0


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    reset_providers()
    yield
    reset_providers()


@pytest.fixture(autouse=True)
def _fresh_subscription_cache() -> Iterator[None]:
    """Rolled-back tests leave no subscriptions; nor may this process's memory of them."""
    from outbound.selectors import forget_subscribed_event_types

    forget_subscribed_event_types()
    yield
    forget_subscribed_event_types()


@pytest.fixture(autouse=True)
def _fresh_journey_events_cache() -> Iterator[None]:
    """Journeys made by one test must not count (or be missed) in the next one."""
    from insights.selectors import forget_conversion_owners
    from journeys.selectors import forget_journey_events_in_use

    forget_journey_events_in_use()
    forget_conversion_owners()
    yield
    forget_journey_events_in_use()
    forget_conversion_owners()


@pytest.fixture(autouse=True)
def _fresh_click_buffer(settings) -> Iterator[None]:
    """Link ids start again in every test database: a destination cached by an earlier test
    (or run) must not answer for another link, nor its buffered clicks land in this test."""
    from messaging.click_buffer import clicks_buffer_forget

    url = settings.REDIS_URL  # a test may point REDIS_URL elsewhere (Redis down)
    clicks_buffer_forget(url)
    yield
    clicks_buffer_forget(url)


def _simulator_config(public_base_url: str, callbacks: bool) -> SimulatorConfig:
    s = django_settings
    return SimulatorConfig(
        account_sid=s.TWILIO_ACCOUNT_SID,
        auth_token=s.TWILIO_AUTH_TOKEN,
        sendgrid_api_key=s.SENDGRID_API_KEY,
        sendgrid_signing_key_pem=s.SIMULATOR_SENDGRID_SIGNING_KEY,
        public_base_url=public_base_url,
        inbound_parse_secret=s.INBOUND_PARSE_SECRET,
        sms_number=s.TWILIO_SMS_FROM,
        whatsapp_number=s.TWILIO_WHATSAPP_FROM,
        inbound_email_domain=s.INBOUND_EMAIL_DOMAIN,
        callbacks=callbacks,
        callback_delay_ms=50,
    )


@pytest.fixture(scope="session")
def _simulator_server():
    sim = start_simulator(_simulator_config("http://127.0.0.1:9", callbacks=False), port=0)
    yield sim
    sim.stop()


@pytest.fixture
def simulator(_simulator_server, settings):
    """The provider simulator with callbacks off; adapters point at it."""
    _simulator_server.reset()
    _simulator_server.configure(callbacks=False, latency_ms=0, error_rate=0.0)
    settings.TWILIO_API_BASE_URL = _simulator_server.url
    settings.SENDGRID_API_HOST = _simulator_server.url
    reset_providers()
    yield _simulator_server
    _simulator_server.reset()


@pytest.fixture
def api_key(db) -> str:
    _, key = ApiKey.objects.create_key(name="tests", scopes=list(ALL_SCOPES))
    return key


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client
