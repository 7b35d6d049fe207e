"""`make run`'s bootstrap: a login, an API key, and the blueprint journeys active on the
first start only (a journey staff archived later stays archived)."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from journeys.models import Journey
from messaging.models import ApiKey

pytestmark = pytest.mark.django_db


def test_first_start_installs_and_activates_the_blueprints_once(settings, tmp_path, capsys):
    settings.DEBUG = True
    settings.DATA_DIR = tmp_path
    call_command("bootstrap_demo")
    live = set(Journey.objects.filter(status="active").values_list("slug", flat=True))
    assert live == {"post-purchase", "onboarding", "survey", "abandoned-cart", "welcome-offer"}
    creds = json.loads((tmp_path / "secrets" / "demo_credentials.json").read_text())
    assert ApiKey.objects.filter(prefix=creds["api_key"].split(".")[0]).exists()
    assert str(tmp_path / "secrets" / "demo_credentials.json") in capsys.readouterr().out

    Journey.objects.filter(slug="onboarding").update(status="archived")
    call_command("bootstrap_demo")
    assert Journey.objects.get(slug="onboarding").status == "archived"
