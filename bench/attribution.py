"""Attribution's cost on event apply: N `order.completed` events, each a conversion for two
journeys and a broadcast that sent its contact messages before (one delivered per journey,
a delivered broadcast message, and a human click on every other contact's broadcast message),
applied by the worker's service (`events_apply_pending`, in-process) with the insights hook
(journeys.event_hooks) registered, vs the same events applied with the hook unregistered.
Runs alternate (on, off) on the same data; each run starts from the same pending events.

Reported: ms per applied event with attribution vs without, the queries per event of both,
and the conversions written (one per event with the hook, none without).

The issue's goal ("attribution on ingest adds <= 20 % to the event ingest cost") is about the
whole ingest of an event: accepted over the API, then applied by the worker. So the figures
with the goal measure that, in the same run, hook on vs off: N events POSTed to
/api/v1/events/ through Django's test client in-process (DRF, API-key auth, throttle, the
accept's transaction; no HTTP server, which would only add a constant to both sides), then
applied by `events_apply_pending`; once with every event a conversion (the worst case) and
once with a realistic mix (1 event in MIX_EVERY is order.completed, the rest page.viewed, which
no journey or broadcast counts)."""

from __future__ import annotations

import datetime as dt
import os
import time

from bench import common as c

# BENCH_ATTRIBUTION_EVENTS overrides the size (a quick run on a busy machine).
N = int(os.environ.get("BENCH_ATTRIBUTION_EVENTS", "0")) or c.scaled(100_000, 1000)
# BENCH_ATTRIBUTION_PARTS: "apply", "ingest" or both (default).
PARTS = os.environ.get("BENCH_ATTRIBUTION_PARTS", "apply ingest").split()
JOURNEYS = 2
MIX_EVERY = 10  # the realistic mix: one conversion event in ten


def build() -> None:
    """The contacts, the journeys and the broadcast counting order.completed, and what they
    sent each contact in the last day."""
    from django.utils import timezone

    from campaigns.models import Broadcast, BroadcastRecipient
    from journeys.models import Enrollment, Journey, JourneyMessage, Step
    from messaging.models import Contact, Message, Touchpoint

    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(external_id=f"att-{i}", phone=f"+14153{i % 1_000_000:06d}") for i in range(N)
    )
    journeys = []
    for j in range(JOURNEYS):
        journey = Journey.objects.create(
            name=f"J{j}",
            slug=f"j{j}",
            status=Journey.Status.ACTIVE,
            trigger_event="cart.updated",  # not fired here: the events only convert
            entry_policy=Journey.EntryPolicy.EVERY_TIME,
            conversion_events=["order.completed"],
            revenue_property="total",
            attribution_model="last_click" if j == 0 else "last_touch",
        )
        step = Step.objects.create(journey=journey, position=0, key="send", kind="send")
        journeys.append((journey, step))
    broadcast = Broadcast.objects.create(
        name="B",
        slug="b",
        status=Broadcast.Status.COMPLETED,
        template_slug="promo",
        conversion_events=["order.completed"],
        revenue_property="total",
        completed_at=now,
    )

    def message(contact, hours_ago: int) -> Message:
        at = now - dt.timedelta(hours=hours_ago)
        return Message(
            direction="outbound",
            channel="sms",
            contact=contact,
            to_address=contact.phone,
            status="delivered",
            sent_at=at,
            delivered_at=at,
        )

    for index, (journey, step) in enumerate(journeys):
        enrollments = Enrollment.objects.bulk_create(
            Enrollment(
                journey=journey,
                contact=contact,
                entry_policy=journey.entry_policy,
                state=Enrollment.State.COMPLETED,
            )
            for contact in contacts
        )
        messages = Message.objects.bulk_create(message(contact, 10 + index) for contact in contacts)
        JourneyMessage.objects.bulk_create(
            JourneyMessage(message=m, enrollment=e, step=step, journey=journey)
            for m, e in zip(messages, enrollments, strict=True)
        )
    sent = Message.objects.bulk_create(message(contact, 20) for contact in contacts)
    BroadcastRecipient.objects.bulk_create(
        BroadcastRecipient(
            broadcast=broadcast,
            contact=contact,
            state="sent",
            channel="sms",
            message=m,
            send_after=now,
            updated_at=now,
        )
        for contact, m in zip(contacts, sent, strict=True)
    )
    Touchpoint.objects.bulk_create(
        Touchpoint(
            contact_id=m.contact_id,
            channel="sms",
            direction="inbound",
            kind="clicked",
            message=m,
            occurred_at=now - dt.timedelta(hours=19),
            dedupe_key=f"bench-click:{m.pk}",
        )
        for m in sent[::2]
    )
    # Statistics, as autovacuum would have them in a running system: without them the
    # planner guesses a bulk-loaded table empty (it scanned every outbound message per event).
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def clear_events() -> None:
    """Drop what a run stored and applied (the messages and clicks stay)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM insights_conversion")
        cur.execute("DELETE FROM messaging_touchpoint WHERE kind IN ('event', 'converted')")
        cur.execute("DELETE FROM journeys_event")


def reset_events() -> None:
    """Drop what a run applied and store the same N events again, pending."""
    from django.db import connection
    from django.utils import timezone

    from journeys.models import Event
    from messaging.models import Contact

    clear_events()
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            name="order.completed",
            contact_id=pk,
            properties={"order_id": str(pk), "total": "49.90", "currency": "EUR"},
            occurred_at=now,
            source=Event.Source.API,
            processed_at=None,
        )
        for pk in Contact.objects.order_by("pk").values_list("pk", flat=True)
    )
    with connection.cursor() as cur:
        cur.execute("ANALYZE journeys_event, messaging_touchpoint, insights_conversion")


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def run(with_hook: bool) -> tuple[float, float, int]:
    """ms per applied event, queries per event, conversions written."""
    from django.db import connection

    from insights.attribution import attribute_event
    from insights.models import Conversion
    from journeys import event_hooks
    from journeys.services import events_apply_pending

    reset_events()
    if with_hook:
        event_hooks.register(attribute_event)
    else:
        event_hooks.unregister(attribute_event)
    counter = QueryCounter()
    applied = 0
    try:
        with connection.execute_wrapper(counter):
            started = time.perf_counter()
            while applied < N:
                done = events_apply_pending(max_batches=1000)
                if not done:
                    break
                applied += done
            seconds = time.perf_counter() - started
    finally:
        event_hooks.register(attribute_event)
    assert applied == N, f"applied {applied} of {N}"
    return seconds * 1000 / N, counter.count / N, Conversion.objects.count()


def run_ingest(with_hook: bool, every: int, run_id: str) -> tuple[float, int]:
    """ms per event to accept (POST /api/v1/events/, in-process) and apply N events, one in
    `every` an order.completed, the others page.viewed; and the conversions written."""
    from django.db import connection
    from django.test import Client

    from insights.attribution import attribute_event
    from insights.models import Conversion
    from journeys import event_hooks
    from journeys.services import events_apply_pending
    from messaging.api_auth import ALL_SCOPES
    from messaging.models import ApiKey

    clear_events()
    with connection.cursor() as cur:
        cur.execute("ANALYZE journeys_event, messaging_touchpoint, insights_conversion")
    _, key = ApiKey.objects.create_key(name=f"bench-{run_id}", scopes=list(ALL_SCOPES))
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    bodies = [
        {
            "name": "order.completed" if i % every == 0 else "page.viewed",
            "contact": {"external_id": f"att-{i}", "phone": f"+14153{i % 1_000_000:06d}"},
            "properties": {"order_id": f"{run_id}-{i}", "total": "49.90", "currency": "EUR"},
        }
        for i in range(N)
    ]
    if with_hook:
        event_hooks.register(attribute_event)
    else:
        event_hooks.unregister(attribute_event)
    applied = 0
    try:
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            answer = client.post(
                "/api/v1/events/",
                body,
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=f"{run_id}-{i}",
            )
            assert answer.status_code == 202, (answer.status_code, answer.content[:300])
        while applied < N:
            done = events_apply_pending(max_batches=1000)
            if not done:
                break
            applied += done
        seconds = time.perf_counter() - started
    finally:
        event_hooks.register(attribute_event)
    assert applied == N, f"applied {applied} of {N}"
    return seconds * 1000 / N, Conversion.objects.count()


def ingest_figures() -> None:
    """Accept + apply, hook on vs off alternating in the same run, both mixes (the goal)."""
    for every, label in ((1, "every event a conversion"), (MIX_EVERY, f"1 in {MIX_EVERY}")):
        run_ingest(True, every, f"warm-{every}")
        on, off, written = [], [], []
        for run in range(c.RUNS):
            ms, conversions = run_ingest(True, every, f"on-{every}-{run}")
            on.append(ms)
            written.append(conversions)
            ms, conversions = run_ingest(False, every, f"off-{every}-{run}")
            off.append(ms)
            assert conversions == 0
        want = len(range(0, N, every))
        assert all(n == want for n in written), f"conversions written: {written} (want {want})"
        figure = c.report(
            c.Figure(
                "attribution",
                f"event ingest (API accept + worker apply), {label}, attribution on",
                "ms/event",
                on,
                "the same ingest, attribution hook off",
                off,
                goal="<= 1.20",
                higher_is_better=False,
                notes={"conversions written per run": written},
            )
        )
        print(f"    pass (<= 1.20x): {'yes' if figure.met else 'NO'}", flush=True)


def main() -> None:
    c.django_setup()
    c.header("Attribution on event apply", events=N, owners=f"{JOURNEYS} journeys + 1 broadcast")
    with c.bench_services():
        build()
        if "ingest" in PARTS:
            ingest_figures()
        if "apply" not in PARTS:
            return
        run(True)  # warm-up: imports, caches, plans
        on, off, on_q, off_q, written = [], [], [], [], []
        for _ in range(c.RUNS):
            ms, queries, conversions = run(True)
            on.append(ms)
            on_q.append(queries)
            written.append(conversions)
            ms, queries, conversions = run(False)
            off.append(ms)
            off_q.append(queries)
            assert conversions == 0
        assert all(n == N for n in written), f"conversions written: {written} (want {N})"
        figure = c.report(
            c.Figure(
                "attribution",
                f"event apply with attribution, {N} conversion events",
                "ms/event",
                on,
                "the same events, attribution hook off",
                off,
                higher_is_better=False,
                notes={
                    "queries per event with attribution (runs)": [round(q, 2) for q in on_q],
                    "queries per event without (runs)": [round(q, 2) for q in off_q],
                    "conversions written per run": written,
                },
            )
        )
        print(f"    apply only: {figure.ratio:.2f}x (the goal is on the whole ingest, above)")


if __name__ == "__main__":
    main()
