"""Inbound bodies are capped, through the real webhooks and the real receivers: an SMS or
WhatsApp body over Twilio's 1,600 characters and email text/HTML over INBOUND_EMAIL_MAX_BYTES
are stored cut and flagged `truncated` on the message and its touchpoint (and in the stored
raw webhook payload); attachments are kept as references with a SHA-256, never inlined.
Signature and secret checks still come first."""

from __future__ import annotations

import hashlib
import json

import pytest

from channels_app.models import WebhookEvent
from messaging.models import Message, Touchpoint
from tests.channels_app.test_webhooks import (
    TWILIO_INBOUND_PATH,
    inbound_params,
    multipart,
    parse_fields,
    post_parse,
    twilio_post,
    webhook_settings,  # noqa: F401 (autouse: public URL, tokens and secrets of these helpers)
)

pytestmark = pytest.mark.django_db


def inbound() -> Message:
    return Message.objects.get(direction="inbound")


def replied(message: Message) -> Touchpoint:
    return Touchpoint.objects.get(kind="replied", data__inbound_message_id=str(message.pk))


@pytest.mark.parametrize("whatsapp", [False, True])
def test_an_sms_body_over_1600_characters_is_stored_cut_and_flagged(client, whatsapp):
    huge = "é" * 1000 + "x" * 1_899_000  # 1.9 MB: fits the request limit, not an SMS
    sender = "whatsapp:+14155552671" if whatsapp else "+14155552671"
    params = inbound_params(huge, From=sender)

    assert twilio_post(client, TWILIO_INBOUND_PATH, params).status_code == 200

    message = inbound()
    assert message.body == "é" * 1000 + "x" * 600
    assert message.metadata["truncated"] is True
    assert message.metadata["original_sizes"] == {"body": 1_900_000}
    assert message.metadata["full_body"] == ""
    touchpoint = replied(message)
    assert touchpoint.data["truncated"] is True
    assert touchpoint.data["original_sizes"] == {"body": 1_900_000}
    # The raw payload kept for audit is cut too.
    assert len(WebhookEvent.objects.get().payload["Body"]) == 1600


def test_an_sms_at_the_limit_is_kept_whole_and_not_flagged(client):
    assert twilio_post(client, TWILIO_INBOUND_PATH, inbound_params("x" * 1600)).status_code == 200
    message = inbound()
    assert message.body == "x" * 1600
    assert "truncated" not in message.metadata
    assert "truncated" not in replied(message).data


def test_an_oversized_sms_with_a_bad_signature_is_refused_before_anything(client):
    params = inbound_params("x" * 100_000)
    response = twilio_post(client, TWILIO_INBOUND_PATH, params, signature="bm9wZQ==")
    assert response.status_code == 403
    assert not Message.objects.exists() and not WebhookEvent.objects.exists()


def test_an_email_over_the_size_limit_is_stored_cut_and_flagged(client, settings):
    settings.INBOUND_EMAIL_MAX_BYTES = 10_000
    text = "Thanks, all good!\n\n" + "> quoted history line\n" * 90_000  # ~2 MB
    html = "<p>Thanks, all good!</p>" + "<p>€</p>" * 300_000
    pdf = b"%PDF-1.4\x00\xff" * 50_000
    body, content_type = multipart(
        parse_fields(
            text=text,
            html=html,
            attachments="1",
            **{"attachment-info": json.dumps({"attachment1": {"filename": "invoice.pdf"}})},
        ),
        files=[("attachment1", "invoice.pdf", "application/pdf", pdf)],
    )

    assert post_parse(client, body, content_type).status_code == 200

    message = inbound()
    assert message.body == "Thanks, all good!"
    assert len(message.html_body.encode()) <= 10_000
    assert message.html_body.startswith("<p>Thanks, all good!</p>")
    assert len(message.metadata["full_body"].encode()) <= 10_000
    assert message.metadata["truncated"] is True
    assert message.metadata["original_sizes"] == {
        "text": len(text.encode()),
        "html": len(html.encode()),
    }
    assert replied(message).data["truncated"] is True
    # The attachment: a reference, not its 500 kB.
    assert message.media == [
        {
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "size": len(pdf),
            "url": "",
            "sha256": hashlib.sha256(pdf).hexdigest(),
        }
    ]
    stored = WebhookEvent.objects.get().payload
    assert stored["truncated"] == message.metadata["original_sizes"]
    assert stored["attachment_files"][0]["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert len(json.dumps(stored)) < 20_000


def test_a_small_email_is_kept_whole(client):
    body, content_type = multipart(parse_fields())
    assert post_parse(client, body, content_type).status_code == 200
    message = inbound()
    assert message.body == "Yes, loved it!"
    assert "truncated" not in message.metadata and "truncated" not in replied(message).data


def test_an_oversized_email_with_wrong_credentials_is_refused_before_anything(client):
    body, content_type = multipart(parse_fields(text="x" * 3_000_000))
    assert post_parse(client, body, content_type, auth="Basic Zm9vOmJhcg==").status_code == 403
    assert not Message.objects.exists() and not WebhookEvent.objects.exists()
