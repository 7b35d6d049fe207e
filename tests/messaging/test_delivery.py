"""Delivery through the real twilio/sendgrid SDKs against the provider simulator."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from channels_app.providers.registry import reset_providers
from channels_app.reply_token import message_id_from_address
from messaging import services
from messaging.models import ConsentChange, ConsentStatus, Message, Touchpoint
from messaging.policies import consent_status
from messaging.status import MessageStatus
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def queue(contact, channel="sms", **kwargs):
    """Create a message without running its delivery task (the test calls the service)."""
    kwargs.setdefault("body", "Hello {{ contact.first_name }}")
    message, _ = services.message_create(contact=contact, channel=channel, **kwargs)
    return message


def django_settings_db_url() -> str:
    """A libpq URL for the test database (a watcher connection outside Django's)."""
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )


def backoff_over(message):
    """Move past the retry time the provider asked for (as the scheduled task would)."""
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())


def kinds(message):
    return list(
        Touchpoint.objects.filter(message=message)
        .order_by("occurred_at", "id")
        .values_list("kind", flat=True)
    )


def test_sms_reaches_the_provider_once_and_is_marked_sent(simulator, settings):
    contact = ContactFactory(first_name="Ada", phone="+14155552671")
    message = queue(contact)
    assert services.message_deliver(message_id=message.pk).result == "sent"

    [received] = simulator.messages()
    assert (received["channel"], received["to"], received["body"]) == (
        "sms",
        "+14155552671",
        "Hello Ada",
    )
    assert received["from"] == settings.TWILIO_SMS_FROM
    callback = urlparse(received["status_callback"])
    assert callback.path == "/webhooks/twilio/status/"
    assert parse_qs(callback.query)["mid"] == [str(message.pk)]

    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.provider == "twilio"
    assert message.provider_message_id == received["id"]
    assert message.attempts == 1 and message.sent_at is not None
    assert kinds(message) == ["queued", "sending", "sent"]
    # A redelivered task finds the message no longer queued and sends nothing.
    assert services.message_deliver(message_id=message.pk).result == "already sent"
    assert len(simulator.messages()) == 1


def test_whatsapp_freeform_inside_the_window(simulator, settings):
    contact = ContactFactory(whatsapp="+14155552672", last_inbound_whatsapp_at=timezone.now())
    template = TemplateFactory(
        channel="whatsapp",
        body="Hi {{ contact.first_name }}",
        content_sid="HX0123456789abcdef0123456789abcdef",
        content_variables={"1": "{{ contact.first_name }}"},
    )
    message = queue(contact, "whatsapp", template=template)
    services.message_deliver(message_id=message.pk)
    [received] = simulator.messages()
    assert received["to"] == "whatsapp:+14155552672"
    assert received["from"] == f"whatsapp:{settings.TWILIO_WHATSAPP_FROM}"
    assert received["body"] == "Hi Ada" and not received["content_sid"]


def test_whatsapp_template_outside_the_window(simulator):
    contact = ContactFactory(whatsapp="+14155552673", first_name="Lin")
    template = TemplateFactory(
        channel="whatsapp",
        body="Hi {{ contact.first_name }}",
        content_sid="HX0123456789abcdef0123456789abcdef",
        content_variables={"1": "{{ contact.first_name }}", "2": "{{ event.order_id }}"},
    )
    message = queue(contact, "whatsapp", template=template, context={"order_id": "A7"})
    services.message_deliver(message_id=message.pk)
    [received] = simulator.messages()
    assert received["content_sid"] == "HX0123456789abcdef0123456789abcdef"
    assert received["content_variables"] == {"1": "Lin", "2": "A7"}
    assert not received["body"]


def test_email_carries_our_id_reply_token_and_both_parts(simulator, settings):
    contact = ContactFactory(email="grace@example.com", first_name="Grace")
    template = TemplateFactory(
        channel="email",
        subject="Thanks {{ contact.first_name }}",
        body="",
        html_body="<p>Thank you, <b>{{ contact.first_name }}</b>.</p>",
    )
    message = queue(contact, "email", template=template)
    assert services.message_deliver(message_id=message.pk).result == "sent"
    [received] = simulator.messages()
    assert received["to"] == "grace@example.com"
    assert received["subject"] == "Thanks Grace"
    assert received["html"] == "<p>Thank you, <b>Grace</b>.</p>"
    assert received["body"] == "Thank you, Grace."  # text part generated from the HTML
    assert received["custom_args"]["touchline_message_id"] == str(message.pk)
    assert received["reply_to"].endswith("@" + settings.INBOUND_EMAIL_DOMAIN)
    assert message_id_from_address(received["reply_to"]) == message.pk
    message.refresh_from_db()
    assert message.provider_message_id and message.provider == "sendgrid"


def test_forged_reply_token_is_not_trusted(settings):
    from channels_app.reply_token import reply_address

    address = reply_address("0d6f7a4e-5b8c-4c1e-9a43-2f1e0b9d8c7a")
    forged = (
        address[: -len(settings.INBOUND_EMAIL_DOMAIN) - 2] + "0@" + settings.INBOUND_EMAIL_DOMAIN
    )
    assert message_id_from_address(address) is not None
    assert message_id_from_address(forged) is None


def test_same_idempotency_key_gives_one_message_and_one_provider_request(simulator):
    contact = ContactFactory()
    first = queue(contact, idempotency_key="order-1:thanks", fingerprint="a")
    again, created = services.message_create(
        contact=contact,
        channel="sms",
        body="Hello",
        idempotency_key="order-1:thanks",
        fingerprint="a",
    )
    assert not created and again.pk == first.pk
    services.message_deliver(message_id=first.pk)
    services.message_deliver(message_id=again.pk)
    assert Message.objects.count() == 1
    assert len(simulator.messages()) == 1
    with pytest.raises(services.IdempotencyConflict):
        services.message_create(
            contact=contact,
            channel="sms",
            body="Other",
            idempotency_key="order-1:thanks",
            fingerprint="b",
        )


@pytest.mark.parametrize("status", [429, 503])
def test_retry_then_success(simulator, status):
    contact = ContactFactory()
    message = queue(contact)
    simulator.configure(error_rate=1.0, error_status=status, retry_after=7)
    outcome = services.message_deliver(message_id=message.pk)
    assert outcome.result == "retrying"
    if status == 429:
        assert outcome.retry_in >= 7  # Retry-After honoured
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.error_code == ("20429" if status == 429 else "20503")  # Twilio codes
    assert message.next_attempt_at > timezone.now()

    simulator.configure(error_rate=0.0)
    # A duplicate task before the backoff ends sends nothing (Retry-After honoured).
    assert services.message_deliver(message_id=message.pk).result == "not due"
    assert len(simulator.messages()) == 0
    backoff_over(message)
    assert services.message_deliver(message_id=message.pk).result == "sent"
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT and message.attempts == 2
    assert message.error_code == ""
    assert len(simulator.rejected()) == 1 and len(simulator.messages()) == 1
    assert kinds(message) == ["queued", "sending", "retrying", "sending", "sent"]


def test_sendgrid_rate_limit_is_retried(simulator):
    contact = ContactFactory()
    message = queue(contact, "email", subject="Hi", body="Hello")
    simulator.configure(error_rate=1.0, error_status=429)
    assert services.message_deliver(message_id=message.pk).result == "retrying"
    simulator.configure(error_rate=0.0)
    backoff_over(message)
    assert services.message_deliver(message_id=message.pk).result == "sent"
    assert len(simulator.messages()) == 1


def test_gives_up_after_max_attempts(simulator, settings):
    settings.MESSAGE_MAX_ATTEMPTS = 2
    message = queue(ContactFactory())
    simulator.configure(error_rate=1.0, error_status=500)
    assert services.message_deliver(message_id=message.pk).result == "retrying"
    backoff_over(message)
    assert services.message_deliver(message_id=message.pk).result == "failed"
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "gave up after 2 attempts" in message.error_message


def test_invalid_number_fails_permanently(simulator):
    contact = ContactFactory(phone="+15005550001")
    message = queue(contact)
    assert services.message_deliver(message_id=message.pk).result == "failed"
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "21211")
    assert message.attempts == 1
    contact.refresh_from_db()
    assert contact.phone_invalid
    assert simulator.messages() == []
    # Nothing more goes to a number the provider called invalid.
    assert queue(contact).status == MessageStatus.SKIPPED


def test_21610_unsubscribes_the_channel(simulator):
    contact = ContactFactory(phone="+15005550004")
    message = queue(contact)
    assert services.message_deliver(message_id=message.pk).result == "failed"
    assert consent_status(contact=contact, channel="sms") == ConsentStatus.UNSUBSCRIBED
    change = ConsentChange.objects.get(contact=contact)
    assert (change.source, change.message_id) == ("provider", message.pk)
    assert Touchpoint.objects.filter(contact=contact, kind="consent_changed").count() == 1


def test_unsubscribed_channel_is_never_sent(simulator):
    contact = ContactFactory()
    services.consent_set(contact=contact, channel="sms", status="unsubscribed", source="api")
    message = queue(contact)
    assert message.status == MessageStatus.SKIPPED
    assert "unsubscribed" in message.error_message
    assert services.message_deliver(message_id=message.pk).result == "already skipped"
    assert simulator.messages() == []
    # Email is another channel: still allowed.
    assert queue(contact, "email", subject="s").status == MessageStatus.QUEUED


def test_consent_is_checked_again_at_send_time(simulator):
    contact = ContactFactory()
    message = queue(contact)
    assert message.status == MessageStatus.QUEUED
    services.consent_set(contact=contact, channel="sms", status="unsubscribed", source="keyword")
    assert services.message_deliver(message_id=message.pk).result == "skipped"
    message.refresh_from_db()
    assert message.status == MessageStatus.SKIPPED
    assert kinds(message) == ["queued", "skipped"]
    assert simulator.messages() == []


def test_marketing_sms_needs_explicit_subscription(simulator):
    contact = ContactFactory()
    message = queue(contact, category="marketing")
    assert message.status == MessageStatus.SKIPPED
    services.consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    assert queue(contact, category="marketing").status == MessageStatus.QUEUED


def test_no_answer_is_parked_as_unknown_not_resent(simulator, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    reset_providers()
    simulator.configure(latency_ms=1500)
    message = queue(ContactFactory())
    assert services.message_deliver(message_id=message.pk).result == "unknown"
    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN
    assert services.message_deliver(message_id=message.pk).result == "already unknown"
    # The provider did accept it: its status callback settles the outcome later.
    from messaging.services import message_transition

    assert message_transition(message=message, to=MessageStatus.DELIVERED)


def test_unreachable_provider_is_retried(settings, db):
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"
    reset_providers()
    message = queue(ContactFactory())
    assert services.message_deliver(message_id=message.pk).result == "retrying"
    message.refresh_from_db()
    assert message.error_code == "network"


def test_sweeper_requeues_lost_tasks_and_parks_stuck_sends(simulator, settings):
    contact = ContactFactory()
    lost = queue(contact)
    stuck = queue(contact)
    long_ago = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago, updated_at=long_ago)
    Message.objects.filter(pk=stuck.pk).update(status="sending", sending_at=long_ago)
    fresh = queue(contact)  # its task is normally on its way: not swept yet
    held = queue(contact)
    Message.objects.filter(pk=held.pk).update(
        updated_at=long_ago, next_attempt_at=timezone.now() + timedelta(hours=1)
    )

    result = services.messages_sweep()  # eager Celery: the re-queued task runs now

    assert result == {"requeued": 1, "unknown": 1}
    lost.refresh_from_db()
    stuck.refresh_from_db()
    assert lost.status == MessageStatus.SENT
    assert stuck.status == MessageStatus.UNKNOWN
    fresh.refresh_from_db()
    held.refresh_from_db()
    assert fresh.status == held.status == MessageStatus.QUEUED
    assert [m["body"] for m in simulator.messages()] == [lost.body]


def test_body_snapshot_survives_template_edits(simulator):
    template = TemplateFactory(body="v1 {{ contact.first_name }}")
    message = queue(ContactFactory(), template=template)
    template.body = "v2"
    template.save()
    services.message_deliver(message_id=message.pk)
    assert simulator.messages()[0]["body"] == "v1 Ada"


def test_content_variables_are_sent_as_a_json_string(simulator):
    # Twilio wants ContentVariables as a JSON *string*; the simulator parses it back.
    contact = ContactFactory(whatsapp="+14155552674")
    template = TemplateFactory(
        channel="whatsapp", body="", content_sid="HX" + "a" * 32, content_variables={"1": "x"}
    )
    services.message_deliver(message_id=queue(contact, "whatsapp", template=template).pk)
    raw = simulator.messages()[0]
    assert json.dumps(raw["content_variables"]) == '{"1": "x"}'


def test_a_delivery_that_keeps_crashing_before_the_claim_is_parked(simulator, settings):
    settings.MESSAGE_MAX_ATTEMPTS = 2
    message = queue(ContactFactory())
    # Six task runs that died before claiming (as a SIGKILLed worker leaves them).
    Message.objects.filter(pk=message.pk).update(delivery_tries=6)
    assert services.message_deliver(message_id=message.pk).result == "failed"
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "crash_loop")
    assert simulator.messages() == []


@pytest.mark.django_db(transaction=True)
def test_a_send_is_a_fixed_short_list_of_statements(
    simulator, django_assert_num_queries, monkeypatch, settings
):
    # Real transactions (no test-wide atomic), so what is counted is what production runs;
    # the test calls the service itself instead of the on-commit task.
    monkeypatch.setattr(services.messages, "enqueue_delivery", lambda *args, **kwargs: None)
    settings.OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS = 3600  # however slow the machine
    contact = ContactFactory()
    services.message_deliver(message_id=queue(contact).pk)  # warms the process's caches
    message = queue(contact)
    with django_assert_num_queries(11) as captured:
        assert services.message_deliver(message_id=message.pk).result == "sent"
    statements = [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]
    assert statements == [
        "UPDATE",  # count the try and read the channel, committed on its own
        "BEGIN",
        "SELECT",  # the message and its contact, locked
        "SELECT",  # the consent, locked
        "UPDATE",  # queued -> sending
        "INSERT",  # its touchpoint
        "COMMIT",  # the claim, before the provider is called
        "BEGIN",
        "UPDATE",  # sending -> sent
        "INSERT",  # its touchpoint
        "COMMIT",  # then the outbound hook: no query while nobody subscribes
    ]
    assert kinds(message) == ["queued", "sending", "sent"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL's row locks"
)
def test_a_stop_being_committed_during_the_claim_is_waited_for(simulator, monkeypatch):
    """The delivery reads consent under a row lock: an opt-out whose transaction is open when
    the claim runs is waited for, and wins."""
    monkeypatch.setattr(services.messages, "enqueue_delivery", lambda *args, **kwargs: None)
    contact = ContactFactory()
    services.consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    message = queue(contact)
    stop_open, commit_stop = threading.Event(), threading.Event()
    results: list[str] = []

    def stop() -> None:
        try:
            with transaction.atomic():
                services.consent_set(
                    contact=contact, channel="sms", status="unsubscribed", source="keyword"
                )
                stop_open.set()
                commit_stop.wait(30)
        finally:
            connection.close()

    def deliver() -> None:
        try:
            results.append(services.message_deliver(message_id=message.pk).result)
        finally:
            connection.close()

    stopper = threading.Thread(target=stop)
    stopper.start()
    assert stop_open.wait(30)
    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        # Let the opt-out commit only once the delivery waits for its lock (or gave up on it).
        with psycopg.connect(django_settings_db_url(), autocommit=True) as watcher:
            for _ in range(500):
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s",
                    ["%messaging_consent%"],
                ).fetchone()[0]
                if waiting or not sender.is_alive():
                    break
                time.sleep(0.02)
    finally:
        commit_stop.set()
        stopper.join(30)
        sender.join(30)

    assert results == ["skipped"]
    assert simulator.messages() == []
    message.refresh_from_db()
    assert message.status == MessageStatus.SKIPPED
