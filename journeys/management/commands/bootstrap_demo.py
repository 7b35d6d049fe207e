"""Prepare the embedded default for a first look: a staff login, an API key, and the
built-in journeys installed and active.

Credentials are generated once and kept under TOUCHLINE_DATA_DIR (0600), then printed on
every start so a new user can log in and call the API straight away. The blueprint journeys
are installed and activated on the first start only: a journey staff paused or archived
later stays so.
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from journeys.blueprints import install_blueprints
from messaging.api_auth import ALL_SCOPES
from messaging.models import ApiKey

CREDENTIALS_FILE = "demo_credentials.json"


class Command(BaseCommand):
    help = "Create (once) a demo admin user and API key, and print them."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo is for the embedded demo (DEBUG=1) only.")
        path = settings.DATA_DIR / "secrets" / CREDENTIALS_FILE
        path.parent.mkdir(mode=0o700, exist_ok=True)
        creds = json.loads(path.read_text()) if path.exists() else {}
        user_model = get_user_model()
        if not creds.get("password") or not user_model.objects.filter(username="admin").exists():
            creds["username"] = "admin"
            creds["password"] = secrets.token_urlsafe(12)
            user, _ = user_model.objects.get_or_create(
                username="admin", defaults={"email": "admin@touchline.example"}
            )
            user.is_staff = user.is_superuser = True
            user.set_password(creds["password"])
            user.save()
        if (
            not creds.get("api_key")
            or not ApiKey.objects.filter(
                prefix=creds["api_key"].split(".")[0], revoked=False
            ).exists()
        ):
            _, creds["api_key"] = ApiKey.objects.create_key(name="demo", scopes=list(ALL_SCOPES))
        if not creds.get("blueprints_installed"):
            install_blueprints(activate=True)
            creds["blueprints_installed"] = True
        path.write_text(json.dumps(creds))
        path.chmod(0o600)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Touchline is starting on the embedded default (SQLite, filesystem broker,",
                    "provider simulator). Open:",
                    f"  Admin:      {settings.PUBLIC_BASE_URL}/admin/   "
                    f"user {creds['username']} / password {creds['password']}",
                    f"  Simulator:  {settings.SIMULATOR_URL}/   (what customers receive)",
                    f"  API key:    {creds['api_key']}",
                    f"  Credentials file: {path}",
                    "  Journeys:   post-purchase (order.completed), onboarding (user.signed_up),",
                    "              survey (survey.requested), abandoned-cart (cart.updated)",
                    "              are installed and active.",
                    "",
                ]
            )
        )
