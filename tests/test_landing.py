"""`/` is a small page pointing at the admin, the API docs and (embedded) the simulator."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_root_page_links_admin_api_docs_and_simulator(client, settings):
    settings.TWILIO_SIMULATED = True
    settings.SIMULATOR_URL = "http://127.0.0.1:8025"
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    for link in ('href="/admin/"', 'href="/api/docs/"', 'href="http://127.0.0.1:8025/"'):
        assert link in html


def test_no_simulator_link_with_real_providers(client, settings):
    settings.TWILIO_SIMULATED = settings.SENDGRID_SIMULATED = False
    html = client.get("/").content.decode()
    assert 'href="/admin/"' in html and "simulator" not in html.lower()


def test_the_root_page_only_answers_get(client):
    assert client.post("/").status_code == 405
