"""Reconciling `unknown` messages: the beat task asks the provider (the real twilio SDK against
the simulator, which answers GET Messages/{Sid}.json and GET Messages.json as Twilio does) and
settles what it finds; what the provider never got fails at the final deadline, never resent."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import psycopg
import pytest
from django import db
from django.db import connection
from django.utils import timezone

from channels_app.events import EventType, TrackingEvent
from channels_app.providers.registry import get_provider, reset_providers
from config.celery import app as celery_app
from journeys.models import Journey, JourneyMessage, Step
from journeys.services import event_ingest
from messaging import reconcile, services, signals
from messaging.models import Message, Touchpoint
from messaging.provider_events import tracking_events_apply
from messaging.status import MessageStatus
from messaging.tasks import reconcile_unknown_messages
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

AFTER = 900
FINAL = 86400


@pytest.fixture(autouse=True)
def _clock(settings):
    settings.UNKNOWN_RECONCILE_AFTER_SECONDS = AFTER
    settings.UNKNOWN_FINAL_DEADLINE_SECONDS = FINAL


def queued(contact=None, channel="sms", body="Your order 42 shipped", **kwargs) -> Message:
    """A queued message whose delivery task has not run (the test plays the worker)."""
    message = Message.objects.create(
        direction="outbound",
        channel=channel,
        contact=contact or ContactFactory(),
        to_address=kwargs.pop("to", None) or "",
        body=body,
        status=MessageStatus.QUEUED,
        queued_at=timezone.now(),
        **kwargs,
    )
    if not message.to_address:
        message.to_address = message.contact.address_for(channel)
        message.save(update_fields=["to_address"])
    return message


def worker_died(message: Message, *, reached_provider: bool) -> Message:
    """What a worker killed mid-send leaves: the request reached the provider (or not), and
    the message is `unknown`, marked so a moment later."""
    started = timezone.now() - timedelta(seconds=1)
    if reached_provider:
        get_provider(message.channel).send(services._outbound(message))
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.UNKNOWN,
        attempts=1,
        sending_at=started,
        unknown_at=started + timedelta(milliseconds=500),
        next_attempt_at=started + timedelta(seconds=AFTER),
        error_code="unknown",
        error_message="the worker stopped during the provider call",
    )
    message.refresh_from_db()
    return message


def at(message: Message, seconds: float):
    return message.unknown_at + timedelta(seconds=seconds)


def reconciled(message: Message) -> list[dict]:
    return list(
        Touchpoint.objects.filter(message=message, kind="reconciled")
        .order_by("id")
        .values_list("data", flat=True)
    )


def test_an_accepted_send_is_found_in_the_listing_and_takes_the_providers_status(simulator):
    # Other traffic to the same number: another body, and one sent long before.
    contact = ContactFactory()
    message = worker_died(queued(contact), reached_provider=True)
    record = simulator.wait_for(simulator.messages()[0]["id"], "delivered")
    get_provider("sms").send(services._outbound(queued(contact, body="Something else")))

    # No callback yet, but not due yet either: nothing is asked.
    assert reconcile.unknown_messages_reconcile(now=at(message, AFTER - 1)) == {}

    result = reconcile.unknown_messages_reconcile(now=at(message, AFTER + 1))

    assert result == {"settled": 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.provider_message_id == record["id"]
    [data] = reconciled(message)
    assert data == {
        "outcome": "delivered",
        "lookup": "listing",
        "provider_status": "delivered",
        "provider_message_id": record["id"],
        "candidates": 1,
    }
    assert Touchpoint.objects.filter(message=message, kind="delivered").exists()
    # Asked, never resent: the provider got our message once.
    assert len(simulator.messages(touchline_id=str(message.pk))) == 1
    # Settled: the next run has nothing to do.
    assert reconcile.unknown_messages_reconcile(now=at(message, FINAL + 1)) == {}


def test_a_known_sid_is_fetched(simulator):
    message = worker_died(queued(), reached_provider=True)
    [record] = simulator.messages()
    simulator.wait_for(record["id"], "delivered")
    Message.objects.filter(pk=message.pk).update(provider_message_id=record["id"])

    assert reconcile.unknown_messages_reconcile(now=at(message, AFTER)) == {"settled": 1}

    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert reconciled(message)[0]["lookup"] == "sid"


def test_a_failure_the_provider_reports_is_applied_with_its_consequences(simulator):
    simulator.configure(undeliverable={"+14155550199": 30006})  # landline: a dead number
    contact = ContactFactory(phone="+14155550199")
    message = worker_died(queued(contact), reached_provider=True)
    simulator.wait_for(simulator.messages()[0]["id"], "undelivered")

    assert reconcile.unknown_messages_reconcile(now=at(message, AFTER)) == {"settled": 1}

    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.UNDELIVERED, "30006")
    contact.refresh_from_db()
    assert contact.phone_invalid


def test_a_send_the_provider_never_got_fails_at_the_final_deadline_and_is_not_resent(
    simulator, django_capture_on_commit_callbacks
):
    message = worker_died(queued(), reached_provider=False)
    published = []

    def listen(sender, **kwargs):
        published.append((kwargs["status"], kwargs["kind"]))

    signals.message_status_changed.connect(listen, dispatch_uid="test-reconcile")
    try:
        assert reconcile.unknown_messages_reconcile(now=at(message, AFTER)) == {"waiting": 1}
        message.refresh_from_db()
        assert message.status == MessageStatus.UNKNOWN
        # Asked again a reconcile delay later, not at every beat.
        assert message.next_attempt_at == at(message, 2 * AFTER)
        assert reconcile.unknown_messages_reconcile(now=at(message, AFTER + 60)) == {}
        assert reconcile.unknown_messages_reconcile(now=at(message, 2 * AFTER)) == {"waiting": 1}
        assert reconciled(message) == [
            {
                "outcome": "not_found_yet",
                "lookup": "listing",
                "final_deadline": at(message, FINAL).isoformat(),
            }
        ]

        with django_capture_on_commit_callbacks(execute=True):
            result = reconcile.unknown_messages_reconcile(now=at(message, FINAL))
    finally:
        signals.message_status_changed.disconnect(dispatch_uid="test-reconcile")

    assert result == {"not_accepted": 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error_code == "not_accepted"
    assert message.error_message.startswith("not accepted by provider")
    assert message.attempts == 1
    assert reconciled(message)[-1] == {"outcome": "not_accepted", "lookup": "listing"}
    failed = Touchpoint.objects.get(message=message, kind="failed")
    assert failed.data["reason"] == "not accepted by provider"
    # An ordinary failure for everything downstream (journeys fall back on it)...
    assert published == [("failed", "failed")]
    # ...and nothing was ever sent.
    assert simulator.messages() == [] and simulator.rejected() == []


def test_a_journey_send_that_never_reached_the_provider_falls_back_to_the_next_channel(
    simulator, settings, django_capture_on_commit_callbacks
):
    TemplateFactory(slug="thanks", channel="sms", body="Thanks, order {{ event.order }}")
    TemplateFactory(slug="thanks", channel="email", subject="Thanks", body="Thanks by email")
    journey = Journey.objects.create(
        name="Thanks", slug="thanks", status="active", trigger_event="order.completed"
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="send",
        kind="send",
        config={"channel": "sms", "template": "thanks", "fallback_channels": ["email"]},
    )
    contact = ContactFactory(phone="+14155552671", email="ada@example.com")
    # The SMS request is swallowed on its way (a provider that never answers and keeps
    # nothing): the send ends `unknown`.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        settings.PROVIDER_TIMEOUT_SECONDS = 0.3
        reset_providers()
        with django_capture_on_commit_callbacks(execute=True):
            event_ingest(name="order.completed", contact=contact, properties={"order": "7"})
    sms = Message.objects.get(contact=contact, channel="sms")
    assert sms.status == MessageStatus.UNKNOWN
    settings.TWILIO_API_BASE_URL = simulator.url
    reset_providers()

    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile.unknown_messages_reconcile(now=at(sms, FINAL)) == {"not_accepted": 1}

    email = Message.objects.get(contact=contact, channel="email")
    assert email.status == MessageStatus.SENT
    assert JourneyMessage.objects.filter(message=email, step__key="send").exists()
    [sent] = simulator.messages()
    assert sent["channel"] == "email"


def test_another_messages_provider_id_is_never_taken(simulator):
    # The same text to the same number twice: the first went out and is recorded; the second
    # never reached the provider. The listing shows one match, and it is not ours.
    contact = ContactFactory()
    first = queued(contact)
    services.message_deliver(message_id=first.pk)
    first.refresh_from_db()
    assert first.status == MessageStatus.SENT
    second = worker_died(queued(contact), reached_provider=False)

    assert reconcile.unknown_messages_reconcile(now=at(second, FINAL)) == {"not_accepted": 1}
    first.refresh_from_db()
    assert first.status == MessageStatus.SENT


def test_a_status_callback_during_the_lookup_wins(simulator, monkeypatch):
    message = worker_died(queued(), reached_provider=False)
    provider = get_provider("sms")
    real_lookup = provider.lookup

    def lookup_while_the_callback_lands(query, **kwargs):
        answer = real_lookup(query, **kwargs)
        tracking_events_apply(
            events=[
                TrackingEvent(
                    event_type=EventType.DELIVERED,
                    provider="twilio",
                    channel="sms",
                    timestamp=timezone.now(),
                    event_id="SMx:delivered",
                    provider_message_id="SM" + "a" * 32,
                    message_id=str(message.pk),
                )
            ]
        )
        return answer

    monkeypatch.setattr(provider, "lookup", lookup_while_the_callback_lands)

    assert reconcile.unknown_messages_reconcile(now=at(message, FINAL)) == {"already_settled": 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert reconciled(message) == []


def test_a_failed_lookup_settles_nothing(simulator, settings):
    message = worker_died(queued(), reached_provider=False)
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # nothing listens
    reset_providers()

    assert reconcile.unknown_messages_reconcile(now=at(message, FINAL)) == {"lookup_failed": 1}

    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN
    assert message.next_attempt_at == at(message, FINAL + AFTER)  # the claim's lease


def test_email_waits_for_the_event_webhook_which_settles_it(simulator):
    # SendGrid has no per-message lookup without its paid Email Activity add-on.
    accepted = worker_died(queued(channel="email", subject="Hi"), reached_provider=False)
    never = worker_died(queued(channel="email", subject="Hi"), reached_provider=False)

    assert reconcile.unknown_messages_reconcile(now=at(accepted, AFTER)) == {"waiting": 2}
    assert reconciled(accepted)[0]["outcome"] == "cannot_look_up"
    # `processed` carrying our id is SendGrid saying it accepted the mail.
    tracking_events_apply(
        events=[
            TrackingEvent(
                event_type=EventType.QUEUED,
                provider="sendgrid",
                channel="email",
                timestamp=timezone.now(),
                event_id="sg-processed-1",
                provider_message_id="14c5d75ce93",
                message_id=str(accepted.pk),
                provider_status="processed",
            )
        ]
    )
    accepted.refresh_from_db()
    assert (accepted.status, accepted.provider_message_id) == ("sent", "14c5d75ce93")

    assert reconcile.unknown_messages_reconcile(now=at(never, FINAL)) == {"not_accepted": 1}
    never.refresh_from_db()
    assert never.status == MessageStatus.FAILED
    assert "no webhook reported it" in never.error_message


def test_the_sweeper_schedules_the_first_lookup(simulator):
    message = queued()
    long_ago = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk=message.pk).update(status="sending", sending_at=long_ago)
    now = timezone.now()

    services.messages_sweep(now=now)

    message.refresh_from_db()
    assert (message.status, message.unknown_at) == (MessageStatus.UNKNOWN, now)
    assert message.next_attempt_at == now + timedelta(seconds=AFTER)


def test_the_beat_runs_the_task(simulator):
    assert celery_app.conf.beat_schedule["reconcile-unknown-messages"]["task"] == (
        reconcile_unknown_messages.name
    )
    message = worker_died(queued(), reached_provider=True)
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )

    assert reconcile_unknown_messages.apply().get() == {"settled": 1}
    message.refresh_from_db()
    assert message.status in (MessageStatus.SENT, MessageStatus.DELIVERED)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED needs PostgreSQL")
def test_a_message_another_reconciler_holds_is_skipped(simulator):
    held = worker_died(queued(), reached_provider=False)
    free = worker_died(queued(), reached_provider=False)
    params = connection.get_connection_params()
    conninfo = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )
    with psycopg.connect(conninfo) as other:
        # Another beat's claim, mid-transaction.
        other.execute(
            "SELECT id FROM messaging_message WHERE id = %s FOR UPDATE", [held.pk]
        ).fetchall()
        result = reconcile.unknown_messages_reconcile(now=at(held, AFTER))
        other.rollback()
    assert result == {"waiting": 1}
    assert reconciled(held) == [] and len(reconciled(free)) == 1
    # Its turn comes on the next run; the one just asked is leased.
    assert reconcile.unknown_messages_reconcile(now=at(held, AFTER)) == {"waiting": 1}
    assert len(reconciled(held)) == 1


def test_a_run_out_of_time_releases_what_it_did_not_reach(simulator):
    first = worker_died(queued(), reached_provider=False)
    second = worker_died(queued(), reached_provider=False)
    budget = iter([True, False])  # time for one lookup, then the soft limit is near

    result = reconcile.unknown_messages_reconcile(
        now=at(first, AFTER), has_time=lambda: next(budget)
    )

    assert result == {"waiting": 1, "released": 1}
    asked = [m for m in (first, second) if reconciled(m)]
    [left] = [m for m in (first, second) if not reconciled(m)]
    assert len(asked) == 1
    left.refresh_from_db()
    # Released, not leased: the next run takes it at once.
    assert left.next_attempt_at == at(first, AFTER)
    assert reconcile.unknown_messages_reconcile(now=at(first, AFTER)) == {"waiting": 1}


def two_unknown_and_one_provider_message(simulator) -> tuple[Message, Message, str]:
    """Two unknown messages with the same text to the same number in the same window; only
    the first reached the provider, so the provider's listing matches both to one message."""
    contact = ContactFactory()
    first = worker_died(queued(contact), reached_provider=True)
    second = worker_died(queued(contact), reached_provider=False)
    [record] = simulator.messages()
    return first, second, record["id"]


def holders(sid: str) -> list[int]:
    return list(
        Message.objects.filter(provider_message_id=sid).order_by("pk").values_list("pk", flat=True)
    )


def test_one_provider_message_settles_only_one_of_two_unknown_messages(simulator, monkeypatch):
    # Two overlapping runs: the second message's lookup answers with the provider message
    # the first message's run settles (and commits) before the second one settles.
    first, second, sid = two_unknown_and_one_provider_message(simulator)
    provider = get_provider("sms")
    real_lookup = provider.lookup

    def lookup_while_another_run_settles_the_first(query, **kwargs):
        answer = real_lookup(query, **kwargs)
        if query.message_id == str(second.pk):
            assert answer.found and answer.provider_message_id == sid
            assert reconcile.message_reconcile(message=first, now=at(first, AFTER)) == "settled"
        return answer

    monkeypatch.setattr(provider, "lookup", lookup_while_another_run_settles_the_first)

    assert reconcile.message_reconcile(message=second, now=at(second, AFTER)) == "waiting"

    assert holders(sid) == [first.pk]
    second.refresh_from_db()
    assert second.status == MessageStatus.UNKNOWN
    assert reconciled(second)[0]["outcome"] == "not_found_yet"
    # Its next check no longer sees the first's message; at the final deadline it fails.
    monkeypatch.setattr(provider, "lookup", real_lookup)
    assert reconcile.unknown_messages_reconcile(now=at(second, FINAL)) == {"not_accepted": 1}
    assert holders(sid) == [first.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks need PostgreSQL")
def test_concurrent_reconciliations_give_one_provider_message_to_one_message(
    simulator, monkeypatch
):
    first, second, sid = two_unknown_and_one_provider_message(simulator)
    provider = get_provider("sms")
    real_lookup = provider.lookup
    both_looked = threading.Barrier(2, timeout=10)

    def lookup_then_wait_for_the_other(query, **kwargs):
        answer = real_lookup(query, **kwargs)
        both_looked.wait()  # both runs have the same answer before either settles
        return answer

    monkeypatch.setattr(provider, "lookup", lookup_then_wait_for_the_other)
    outcomes: dict[int, str] = {}

    def run(message: Message) -> None:
        try:
            outcomes[message.pk] = reconcile.message_reconcile(
                message=message, now=at(message, AFTER)
            )
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=run, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes.values()) == ["settled", "waiting"]
    assert len(holders(sid)) == 1
    [winner] = [pk for pk, outcome in outcomes.items() if outcome == "settled"]
    assert holders(sid) == [winner]
