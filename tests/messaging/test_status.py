"""The status machine: forward-only, terminal states, each transition one touchpoint."""

import pytest

from messaging.models import Touchpoint
from messaging.services import message_transition
from messaging.status import FINAL, TRANSITIONS, MessageStatus, can_transition, sources_for
from tests.factories import ContactFactory

S = MessageStatus


def test_transitions_only_move_forward():
    assert can_transition(S.QUEUED, S.SENDING)
    assert can_transition(S.SENT, S.DELIVERED)
    assert can_transition(S.DELIVERED, S.READ)
    assert not can_transition(S.DELIVERED, S.SENT)
    assert not can_transition(S.READ, S.DELIVERED)
    for terminal in (S.FAILED, S.UNDELIVERED, S.SKIPPED):
        assert TRANSITIONS[terminal] == frozenset()
    assert {S.FAILED, S.UNDELIVERED, S.SKIPPED, S.DELIVERED} <= FINAL


def test_a_callback_may_overtake_the_worker():
    # The provider can report delivery before the worker commits `sent`.
    assert S.SENDING in sources_for(S.DELIVERED)
    # A crashed send parked as unknown is settled by whatever the provider reports.
    assert sources_for(S.SENT) >= {S.SENDING, S.UNKNOWN}


@pytest.fixture
def sent_message(db):
    from messaging.models import Direction, Message

    contact = ContactFactory()
    return Message.objects.create(
        direction=Direction.OUTBOUND,
        channel="sms",
        contact=contact,
        to_address=contact.phone,
        body="hi",
        status=S.SENT,
    )


def test_late_sent_after_delivered_is_ignored(sent_message):
    assert message_transition(message=sent_message, to=S.DELIVERED)
    assert not message_transition(message=sent_message, to=S.SENT)
    sent_message.refresh_from_db()
    assert sent_message.status == S.DELIVERED
    assert sent_message.delivered_at is not None
    kinds = list(Touchpoint.objects.filter(message=sent_message).values_list("kind", flat=True))
    assert kinds == ["delivered"]


def test_repeated_transition_writes_one_touchpoint(sent_message):
    assert message_transition(message=sent_message, to=S.DELIVERED)
    sent_message.status = S.SENT  # a stale in-memory copy must not fool the database
    assert not message_transition(message=sent_message, to=S.DELIVERED)
    assert Touchpoint.objects.filter(message=sent_message, kind="delivered").count() == 1


def test_failed_is_terminal(sent_message):
    assert message_transition(message=sent_message, to=S.FAILED, fields={"error_code": "30003"})
    for later in (S.DELIVERED, S.READ, S.SENT, S.UNDELIVERED):
        assert not message_transition(message=sent_message, to=later)
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.error_code) == (S.FAILED, "30003")


def test_touchpoints_are_append_only(sent_message):
    message_transition(message=sent_message, to=S.DELIVERED)
    tp = Touchpoint.objects.get(message=sent_message)
    tp.kind = "read"
    with pytest.raises(ValueError):
        tp.save()
    with pytest.raises(ValueError):
        tp.delete()
