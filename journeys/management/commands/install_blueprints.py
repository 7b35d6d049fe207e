"""`python manage.py install_blueprints [--activate]`: the three built-in journeys."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from journeys.blueprints import install_blueprints


class Command(BaseCommand):
    help = "Install the post-purchase, onboarding and survey journeys with their templates."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--activate", action="store_true", help="Make them active.")

    def handle(self, *args, activate: bool, **options) -> None:
        done = install_blueprints(activate=activate)
        for line in done:
            self.stdout.write(f"  {line}")
        self.stdout.write(self.style.SUCCESS(f"Blueprints ready ({len(done)} changes)."))
