"""`python manage.py create_api_key NAME [--scopes a b …]`: prints the new key on its last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import audit_record, audit_snapshot
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
        with transaction.atomic():
            api_key, key = ApiKey.objects.create_key(name=name, scopes=sorted(set(scopes)))
            audit_record(
                actor="manage.py create_api_key",
                action="create",
                target=api_key,
                after=audit_snapshot(api_key),
            )
        self.stderr.write(f"Created API key {api_key.prefix}… '{name}' with scopes: {scopes}")
        self.stdout.write(key)
