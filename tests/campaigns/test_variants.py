"""Message variants: assigned at launch by the freeze (deterministic, in proportion to the
weights), sent with the variant's template; test-then-winner: the winner chosen by the right
metric, the rest released with it and sent once; pause / cancel while awaiting; a release
that crashes or runs twice never sends twice."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from unittest import mock

import pytest
from django.db import connection

from audit.models import AuditEntry
from campaigns import services
from campaigns.experiment_report import experiment_report
from campaigns.models import Broadcast, BroadcastRecipient
from campaigns.services import split
from messaging.models import Contact, Direction, Message, Touchpoint
from tests.factories import TemplateFactory

from .broadcast_fixtures import (
    NOW,
    draft,
    marketer,
    messages_per_contact,
    people,
    static_segment,
)

pytestmark = pytest.mark.django_db
R = BroadcastRecipient.State
S = Broadcast.Status
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def staff(db):
    return marketer()


@pytest.fixture
def send(django_capture_on_commit_callbacks, simulator):
    def run(now: dt.datetime = NOW) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return services.run_due(now=now)

    return run


def families(*slugs: str, channels=("sms", "email")) -> None:
    for slug in slugs:
        for channel in channels:
            TemplateFactory(
                slug=slug,
                channel=channel,
                subject="Sale" if channel == "email" else "",
                body=f"[{slug}] Hi {{{{ contact.first_name }}}}!",
            )


def crowd(n: int) -> list[Contact]:
    """n contacts with an email address (bulk: proportions need a few thousand)."""
    Contact.objects.bulk_create(
        Contact(external_id=f"c-{i}", email=f"c{i}@example.com", timezone="UTC") for i in range(n)
    )
    return list(Contact.objects.filter(external_id__startswith="c-"))


def launch(broadcast: Broadcast, staff, now: dt.datetime = NOW) -> Broadcast:
    return services.broadcast_launch(broadcast=broadcast, actor=staff, now=now)


def groups(broadcast: Broadcast) -> Counter:
    rows = BroadcastRecipient.objects.filter(broadcast=broadcast).values_list("state", "variant")
    return Counter(variant or state for state, variant in rows)


def ab(segment, **fields) -> Broadcast:
    fields.setdefault(
        "variants", [{"template_slug": "a", "weight": 50}, {"template_slug": "b", "weight": 50}]
    )
    fields.setdefault("channel_order", ["email"])
    fields.setdefault("category", "transactional")
    return draft([segment], template_slug="a", **fields)


def test_assignment_is_deterministic_and_follows_the_weights(staff):
    families("a", "b", "c")
    contacts = crowd(4000)
    variants = [
        {"template_slug": "a", "weight": 60},
        {"template_slug": "b", "weight": 30},
        {"template_slug": "c", "weight": 10},
    ]
    broadcast = launch(ab(static_segment(contacts), variants=variants, holdout_percent=10), staff)

    counts = groups(broadcast)
    assert sum(counts.values()) == 4000
    # control 10 %, then a/b/c split the other 90 % 60/30/10, within a few percent
    assert counts["control"] == pytest.approx(400, abs=60)
    assert counts["a"] == pytest.approx(4000 * 0.9 * 0.6, abs=120)
    assert counts["b"] == pytest.approx(4000 * 0.9 * 0.3, abs=100)
    assert counts["c"] == pytest.approx(4000 * 0.9 * 0.1, abs=60)
    # the SQL hash is the Python one: every row is in the group its bucket names
    p = split.plan(broadcast)
    for contact_id, state, variant in BroadcastRecipient.objects.filter(
        broadcast=broadcast
    ).values_list("contact_id", "state", "variant"):
        assert p.group_of(split.bucket_of(contact_id, broadcast.pk)) == (variant or state)
    # a second broadcast with the same id would assign the same; another id shuffles anew
    same = {
        c: split.plan(broadcast).group_of(split.bucket_of(c.pk, broadcast.pk)) for c in contacts
    }
    other = {c: p.group_of(split.bucket_of(c.pk, broadcast.pk + 1)) for c in contacts}
    assert same != other


def test_the_dry_run_split_is_what_the_launch_freezes(staff):
    from campaigns.dryrun import broadcast_dry_run

    families("a", "b")
    contacts = crowd(500)
    broadcast = ab(
        static_segment(contacts),
        holdout_percent=20,
        variant_test_percent=30,
        winner_after_hours=4,
        winner_metric="clicked",
    )
    predicted = broadcast_dry_run(broadcast=broadcast, now=NOW)["split"]
    launch(broadcast, staff)
    counts = groups(broadcast)
    assert predicted == {
        "control": counts["control"],
        "awaiting_winner": counts["awaiting_winner"],
        "variants": {"a": counts["a"], "b": counts["b"]},
    }
    assert counts["control"] > 0 and counts["awaiting_winner"] > 0


def test_each_recipient_is_sent_its_variants_template(staff, send, simulator):
    families("a", "b")
    contacts = people(40)
    broadcast = launch(ab(static_segment(contacts)), staff)
    send()

    rows = BroadcastRecipient.objects.filter(broadcast=broadcast).select_related("message")
    assert {r.variant for r in rows} == {"a", "b"}
    for row in rows:
        assert row.state == R.SENT
        assert row.message.template.slug == row.variant
        assert row.message.metadata["variant"] == row.variant
    bodies = Counter(m["body"].split("]")[0] for m in simulator.messages(channel="email"))
    assert set(bodies) == {"[a", "[b"}
    assert set(messages_per_contact(broadcast).values()) == {1}


def test_without_variants_everything_is_as_before(staff, send):
    families("promo")
    contacts = people(5)
    broadcast = launch(draft([static_segment(contacts)], channel_order=["email"]), staff)
    send()
    assert set(
        BroadcastRecipient.objects.filter(broadcast=broadcast).values_list("variant", "state")
    ) == {("", "sent")}


# --- test then winner -----------------------------------------------------------------------


def click(message: Message, at: dt.datetime) -> None:
    Touchpoint.objects.create(
        contact_id=message.contact_id,
        kind="clicked",
        direction=Direction.INBOUND,
        message=message,
        occurred_at=at,
        dedupe_key=f"click:{message.pk}",
    )


def convert(contact_id: int, at: dt.datetime, name: str = "order.completed") -> None:
    Touchpoint.objects.create(
        contact_id=contact_id,
        kind="event",
        direction=Direction.INBOUND,
        occurred_at=at,
        data={"name": name},
        dedupe_key=f"event:{contact_id}:{at.isoformat()}:{name}",
    )


def run_test_phase(staff, send, n: int = 200, metric: str = "clicked", **fields) -> Broadcast:
    families("a", "b")
    contacts = crowd(n)
    broadcast = launch(
        ab(
            static_segment(contacts),
            variant_test_percent=30,
            winner_after_hours=4,
            winner_metric=metric,
            **fields,
        ),
        staff,
    )
    send()
    # the messages were created (and delivered) on the wall clock: put them at the send time
    Message.objects.update(created_at=NOW, sent_at=NOW)
    return broadcast


def test_the_rest_waits_then_gets_the_winner_by_the_metric_exactly_once(staff, send):
    broadcast = run_test_phase(staff, send)
    assert broadcast.winner_due_at == NOW + 4 * HOUR
    counts = groups(broadcast)
    assert counts["awaiting_winner"] == pytest.approx(140, abs=25)
    assert counts["a"] + counts["b"] + counts["awaiting_winner"] == 200
    broadcast.refresh_from_db()
    assert broadcast.status == S.SENDING  # not completed while the rest waits
    assert Message.objects.count() == counts["a"] + counts["b"]
    # b's recipients click more (as a rate: b has fewer recipients than a may)
    sent_b = list(Message.objects.filter(broadcast_recipient__variant="b"))
    sent_a = list(Message.objects.filter(broadcast_recipient__variant="a"))
    for message in sent_b[: len(sent_b) // 2]:
        click(message, NOW + HOUR)
    click(sent_a[0], NOW + HOUR)

    assert services.broadcasts_choose_winners(now=NOW + 3 * HOUR) == 0  # not yet
    send(NOW + 4 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.winner_variant == "b" and broadcast.winner_chosen_at == NOW + 4 * HOUR
    send(NOW + 4 * HOUR + dt.timedelta(seconds=5))
    counts_after = groups(broadcast)
    assert counts_after["awaiting_winner"] == 0
    assert counts_after["b"] == counts["b"] + counts["awaiting_winner"]
    assert set(messages_per_contact(broadcast).values()) == {1}
    assert len(messages_per_contact(broadcast)) == 200
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED
    entry = AuditEntry.objects.get(action="choose_winner")
    assert entry.actor_label == "system" and entry.context["details"]["winner"] == "b"
    assert entry.context["details"]["released"] == counts["awaiting_winner"]
    assert not Touchpoint.objects.filter(kind__contains="winner").exists()
    report = experiment_report(broadcast=broadcast)
    assert report["winner_variant"] == "b"
    assert [v["winner"] for v in report["variants"]] == [False, True]


def test_the_release_keeps_a_later_send_time_of_a_recipient(staff, send):
    """Released at the winner: pending from now, or from its own send time if that is later
    (never earlier than it was frozen with)."""
    broadcast = run_test_phase(staff, send)
    awaiting = BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.AWAITING_WINNER)
    later = list(awaiting.values_list("pk", flat=True)[:10])
    BroadcastRecipient.objects.filter(pk__in=later).update(send_after=NOW + 10 * HOUR)
    assert services.broadcasts_choose_winners(now=NOW + 4 * HOUR) == 1
    released = BroadcastRecipient.objects.filter(broadcast=broadcast, pk__in=later)
    assert set(released.values_list("state", "send_after")) == {(R.PENDING, NOW + 10 * HOUR)}
    others = BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.PENDING).exclude(
        pk__in=later
    )
    assert others.exists()
    assert set(others.values_list("send_after", flat=True)) == {NOW + 4 * HOUR}
    send(NOW + 4 * HOUR + dt.timedelta(seconds=5))
    assert not Message.objects.filter(broadcast_recipient__in=later).exists()
    assert set(released.values_list("state", flat=True)) == {R.PENDING}
    send(NOW + 10 * HOUR)
    assert Message.objects.filter(broadcast_recipient__in=later).count() == 10


def test_a_tie_goes_to_the_first_variant(staff, send):
    broadcast = run_test_phase(staff, send, n=60)
    services.broadcasts_choose_winners(now=NOW + 5 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.winner_variant == "a"


def test_the_winner_by_conversions_counts_events_within_the_window(staff, send):
    broadcast = run_test_phase(
        staff,
        send,
        metric="converted",
        conversion_events=["order.completed"],
        conversion_window_hours=2,
    )
    rows = BroadcastRecipient.objects.filter(broadcast=broadcast).exclude(variant="")
    a = [r.contact_id for r in rows if r.variant == "a"]
    b = [r.contact_id for r in rows if r.variant == "b"]
    for contact_id in a[:3]:
        convert(contact_id, NOW + HOUR)  # within 2 h: counts
    for contact_id in b:
        convert(contact_id, NOW + 3 * HOUR)  # after the window: does not
        convert(contact_id, NOW + HOUR, name="page.viewed")  # not a conversion event
    services.broadcasts_choose_winners(now=NOW + 4 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.winner_variant == "a"
    variants = {v["variant"]: v for v in experiment_report(broadcast=broadcast)["variants"]}
    assert variants["a"]["converted"] == 3 and variants["b"]["converted"] == 0


def test_pause_while_awaiting_holds_the_rest_until_resumed(staff, send):
    broadcast = run_test_phase(staff, send)
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW + HOUR)
    send(NOW + 4 * HOUR)  # the winner is chosen, but nothing is sent while paused
    broadcast.refresh_from_db()
    assert broadcast.winner_variant and broadcast.status == S.PAUSED
    sent_before = Message.objects.count()
    send(NOW + 5 * HOUR)
    assert Message.objects.count() == sent_before
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW + 6 * HOUR)
    send(NOW + 6 * HOUR)
    assert len(messages_per_contact(broadcast)) == 200
    assert set(messages_per_contact(broadcast).values()) == {1}


def test_cancel_while_awaiting_cancels_the_rest(staff, send):
    broadcast = run_test_phase(staff, send)
    waiting = groups(broadcast)["awaiting_winner"]
    services.broadcast_cancel(broadcast=broadcast, actor=staff, now=NOW + HOUR)
    assert groups(broadcast)["awaiting_winner"] == 0
    assert (
        BroadcastRecipient.objects.filter(broadcast=broadcast, state=R.CANCELLED).count() == waiting
    )
    sent_before = Message.objects.count()
    send(NOW + 5 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.winner_variant == "" and Message.objects.count() == sent_before


def test_a_crash_between_choosing_and_releasing_leaves_everything_to_the_next_run(staff, send):
    broadcast = run_test_phase(staff, send)
    waiting = groups(broadcast)["awaiting_winner"]
    with (
        mock.patch(
            "campaigns.services.winner.audit_record", side_effect=RuntimeError("worker killed")
        ),
        pytest.raises(RuntimeError),
    ):
        services.broadcasts_choose_winners(now=NOW + 4 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.winner_variant == "" and groups(broadcast)["awaiting_winner"] == waiting

    # the next run chooses and releases; a run after that (a duplicate task) does nothing
    assert services.broadcasts_choose_winners(now=NOW + 4 * HOUR) == 1
    assert services.broadcast_choose_winner(broadcast=broadcast, now=NOW + 5 * HOUR) == ""
    send(NOW + 5 * HOUR)
    send(NOW + 6 * HOUR)
    assert len(messages_per_contact(broadcast)) == 200
    assert set(messages_per_contact(broadcast).values()) == {1}
    assert AuditEntry.objects.filter(action="choose_winner").count() == 1


def test_the_send_window_skips_those_still_awaiting(staff, send):
    broadcast = run_test_phase(staff, send, end_at=NOW + 5 * HOUR)
    waiting = groups(broadcast)["awaiting_winner"]
    services.broadcast_pause(broadcast=broadcast, actor=staff, now=NOW + HOUR)
    services.broadcast_resume(broadcast=broadcast, actor=staff, now=NOW + HOUR)
    # the winner never came (say the beat was down) and the window ended: skipped
    with mock.patch("campaigns.services.winner.winners_due", return_value=Broadcast.objects.none()):
        send(NOW + 6 * HOUR)
    broadcast.refresh_from_db()
    assert broadcast.status == S.COMPLETED
    assert (
        BroadcastRecipient.objects.filter(
            broadcast=broadcast, state=R.SKIPPED, reason=services.WINDOW_ENDED
        ).count()
        == waiting
    )


def test_the_bucket_is_one_expression_on_every_backend(db):
    with connection.cursor() as cursor:
        hashed = split.bucket_sql("t.id", 7)
        cursor.execute(f"SELECT {hashed} FROM (SELECT %s AS id) AS t", [123456789])  # noqa: S608
        assert cursor.fetchone()[0] == split.bucket_of(123456789, 7)
