# Signing secrets encrypted at rest (Fernet) and the attempt log cut to a short printable
# excerpt, with no body where no HTTP answer came back. Data first, then the schema.

import django.core.validators
import outbound.egress
import outbound.models
from django.db import migrations, models

BATCH = 500


def encrypt_secrets(apps, schema_editor):
    from outbound import encryption

    Subscription = apps.get_model("outbound", "WebhookSubscription")
    rows = list(Subscription.objects.filter(secret_encrypted="").only("pk", "secret"))
    for row in rows:
        row.secret_encrypted = encryption.encrypt(row.secret)
    Subscription.objects.bulk_update(rows, ["secret_encrypted"], batch_size=BATCH)


def decrypt_secrets(apps, schema_editor):
    from outbound import encryption

    Subscription = apps.get_model("outbound", "WebhookSubscription")
    rows = list(Subscription.objects.only("pk", "secret_encrypted"))
    for row in rows:
        row.secret = encryption.decrypt(row.secret_encrypted)
    Subscription.objects.bulk_update(rows, ["secret"], batch_size=BATCH)


def cut_response_bodies(apps, schema_editor):
    from outbound import egress

    Attempt = apps.get_model("outbound", "WebhookAttempt")
    Attempt.objects.filter(status_code__isnull=True).exclude(response_body="").update(
        response_body=""
    )
    changed = []
    for row in Attempt.objects.exclude(response_body="").only("pk", "response_body").iterator():
        cut = egress.excerpt(row.response_body.encode())
        if cut != row.response_body:
            row.response_body = cut
            changed.append(row)
        if len(changed) >= BATCH:
            Attempt.objects.bulk_update(changed, ["response_body"])
            changed = []
    if changed:
        Attempt.objects.bulk_update(changed, ["response_body"])


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhooksubscription",
            name="secret_encrypted",
            field=models.TextField(default="", editable=False),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets, elidable=False),
        migrations.RemoveField(
            model_name="webhooksubscription",
            name="secret",
        ),
        migrations.AlterField(
            model_name="webhooksubscription",
            name="secret_encrypted",
            field=models.TextField(default=outbound.models.new_encrypted_secret, editable=False),
        ),
        migrations.AlterField(
            model_name="webhooksubscription",
            name="url",
            field=models.CharField(
                max_length=2000,
                validators=[
                    django.core.validators.URLValidator(
                        message="Enter a valid http:// or https:// URL.", schemes=["http", "https"]
                    ),
                    outbound.egress.validate_url_destination,
                ],
            ),
        ),
        migrations.RunPython(cut_response_bodies, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="webhookattempt",
            name="response_body",
            field=models.CharField(
                blank=True,
                help_text="A printable excerpt of the response (control characters removed); "
                "empty when no HTTP response came back.",
                max_length=256,
            ),
        ),
        migrations.AddConstraint(
            model_name="webhookattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status_code__isnull", False), ("response_body", ""), _connector="OR"
                ),
                name="webhook_attempt_body_needs_response",
            ),
        ),
    ]
