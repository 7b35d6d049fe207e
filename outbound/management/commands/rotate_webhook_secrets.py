"""Re-encrypt every webhook signing secret with the current first OUTBOUND_SECRET_KEYS key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from outbound import encryption
from outbound.models import WebhookSubscription

BATCH = 200


class Command(BaseCommand):
    help = (
        "Re-encrypt all webhook subscription signing secrets with the first key of "
        "OUTBOUND_SECRET_KEYS (key rotation). Put the new key first, keep the old ones after "
        "it, run this, then remove the old keys. The secrets themselves (and so every "
        "signature) do not change."
    )

    def handle(self, *args, **options) -> None:
        rotated = 0
        last_pk = 0
        while True:
            with transaction.atomic():
                # Locked while re-encrypted so a concurrent update cannot be overwritten.
                rows = list(
                    WebhookSubscription.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .only("pk", "secret_encrypted")[:BATCH]
                )
                if not rows:
                    break
                changed = []
                for row in rows:
                    try:
                        token = encryption.rotate(row.secret_encrypted)
                    except encryption.InvalidToken as exc:
                        raise CommandError(
                            f"The secret of subscription {row.pk} opens with none of "
                            "OUTBOUND_SECRET_KEYS; nothing in this batch was changed."
                        ) from exc
                    row.secret_encrypted = token
                    changed.append(row)
                WebhookSubscription.objects.bulk_update(changed, ["secret_encrypted"])
                rotated += len(changed)
                last_pk = rows[-1].pk
        self.stdout.write(f"Re-encrypted {rotated} webhook signing secret(s) with the first key.")
