"""Signing secrets are stored encrypted (Fernet under OUTBOUND_SECRET_KEYS), rotate without
changing a single signature, and existing plain-text secrets are encrypted by the migration."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from outbound import encryption
from outbound.models import WebhookSubscription

from .conftest import spec_verify


def stored_secret(subscription_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_encrypted FROM outbound_webhooksubscription WHERE id = %s",
            [subscription_id],
        )
        return cursor.fetchone()[0]


def row_text(subscription_id: int) -> str:
    """Every column of the row, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM outbound_webhooksubscription WHERE id = %s", [subscription_id]
        )
        return " ".join(str(value) for value in cursor.fetchone())


@pytest.mark.django_db
def test_the_secret_is_encrypted_in_the_row_and_never_stored_plain(api, receiver):
    created = api.post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "event_types": ["message.sent"]},
        format="json",
    ).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")

    raw = row_text(created["id"])
    assert secret not in raw and secret.removeprefix("whsec_") not in raw
    token = stored_secret(created["id"])
    assert encryption.decrypt(token) == secret
    with pytest.raises(InvalidToken):  # a different key cannot read it
        Fernet(Fernet.generate_key()).decrypt(token.encode())
    assert WebhookSubscription.objects.get(pk=created["id"]).secret == secret


@pytest.mark.django_db
def test_the_default_key_is_derived_from_secret_key(settings, subscribe):
    settings.OUTBOUND_SECRET_KEYS = []
    subscription = subscribe("message.sent")
    derived = Fernet(encryption.derived_key(settings.SECRET_KEY))
    assert derived.decrypt(stored_secret(subscription.pk).encode()).decode() == (
        subscription.secret
    )
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(InvalidToken):
        WebhookSubscription.objects.get(pk=subscription.pk).secret  # noqa: B018


@pytest.mark.django_db
def test_rotation_re_encrypts_with_the_first_key_and_signatures_do_not_change(
    settings, subscribe, receiver, ping
):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.OUTBOUND_SECRET_KEYS = [old_key]
    subscriptions = [subscribe("message.sent") for _ in range(3)]
    secrets = {s.pk: s.secret for s in subscriptions}
    before = {s.pk: stored_secret(s.pk) for s in subscriptions}

    settings.OUTBOUND_SECRET_KEYS = [new_key, old_key]  # new key first, old still decrypts
    call_command("rotate_webhook_secrets", stdout=(out := io.StringIO()))

    assert "Re-encrypted 3 webhook signing secret(s)" in out.getvalue()
    settings.OUTBOUND_SECRET_KEYS = [new_key]  # the old key is gone
    for subscription in subscriptions:
        token = stored_secret(subscription.pk)
        assert token != before[subscription.pk]
        assert Fernet(new_key).decrypt(token.encode()).decode() == secrets[subscription.pk]
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(token.encode())

    # A delivery after rotation is signed with the same secret as before.
    delivery = ping(WebhookSubscription.objects.get(pk=subscriptions[0].pk))
    assert delivery.status == "succeeded"
    [request] = receiver.requests
    assert spec_verify(
        secret=secrets[subscriptions[0].pk], headers=request.headers, body=request.body
    )


@pytest.mark.django_db
def test_rotation_refuses_a_secret_no_key_opens(settings, subscribe):
    settings.OUTBOUND_SECRET_KEYS = [Fernet.generate_key().decode()]
    subscription = subscribe("message.sent")
    settings.OUTBOUND_SECRET_KEYS = [Fernet.generate_key().decode()]
    before = stored_secret(subscription.pk)

    with pytest.raises(CommandError, match=f"subscription {subscription.pk}"):
        call_command("rotate_webhook_secrets", stdout=io.StringIO())
    assert stored_secret(subscription.pk) == before


@pytest.mark.django_db
def test_a_delivery_whose_secret_cannot_be_decrypted_fails_with_the_reason(
    settings, subscribe, receiver, ping
):
    subscription = subscribe("message.sent")
    settings.OUTBOUND_SECRET_KEYS = [Fernet.generate_key().decode()]

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts) == ("failed", 1)
    [attempt] = delivery.attempt_log.all()
    assert "cannot be decrypted with OUTBOUND_SECRET_KEYS" in attempt.error
    assert receiver.requests == []


def test_a_bad_key_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.OUTBOUND_SECRET_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key #1"):
        encryption.encrypt("whsec_x")


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_plain_secrets_and_cuts_logged_bodies():
    executor = MigrationExecutor(connection)
    executor.migrate([("outbound", "0001_initial")])
    old = executor.loader.project_state([("outbound", "0001_initial")]).apps
    subscription = old.get_model("outbound", "WebhookSubscription").objects.create(
        url="https://crm.example.com/h",
        event_types=["message.sent"],
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    delivery = old.get_model("outbound", "WebhookDelivery").objects.create(
        subscription=subscription, event_type="message.sent", webhook_id="msg_1", payload={}
    )
    Attempt = old.get_model("outbound", "WebhookAttempt")
    answered = Attempt.objects.create(
        delivery=delivery,
        attempted_at="2026-11-23T10:00:00Z",
        status_code=200,
        response_body="+OK\r\n" + "k" * 1000,
    )
    errored = Attempt.objects.create(
        delivery=delivery,
        attempted_at="2026-11-23T10:00:00Z",
        status_code=None,
        response_body="should not be here",
        error="ConnectionError",
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("outbound"))

    assert "whsec_" not in row_text(subscription.pk)
    assert WebhookSubscription.objects.get(pk=subscription.pk).secret == (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    from outbound.models import WebhookAttempt

    assert WebhookAttempt.objects.get(pk=answered.pk).response_body == "+OK  " + "k" * 251
    assert WebhookAttempt.objects.get(pk=errored.pk).response_body == ""
