"""`python manage.py create_api_key NAME [--scopes a b …]`: prints the new key on its last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from messaging.api_auth import ALL_SCOPES
from messaging.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key (stored hashed). The key is printed once, on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=list(ALL_SCOPES),
            help=f"Scopes to grant (default: all). Known: {', '.join(ALL_SCOPES)}",
        )

    def handle(self, *args, name: str, scopes: list[str], **options) -> None:
        unknown = sorted(set(scopes) - set(ALL_SCOPES) - {"*"})
        if unknown:
            raise CommandError(f"Unknown scope(s): {', '.join(unknown)}")
        api_key, key = ApiKey.objects.create_key(name=name, scopes=sorted(set(scopes)))
        self.stderr.write(f"Created API key {api_key.prefix}… '{name}' with scopes: {scopes}")
        self.stdout.write(key)
