"""Profile the product's hot paths in-process with pyinstrument (a dev-only tool:
`pip install pyinstrument==5.1.1`), on the benchmark database and Redis db.

    python -m bench.profile deliver|advance|advance_batch|ingest|timeline [--html out.html]

Each target builds a small data set, warms up, then profiles a loop of the real service
calls and prints pyinstrument's call tree and the queries per call.
"""

from __future__ import annotations

import argparse
import datetime as dt

from bench import common as c

LOOPS = 300


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def target_deliver():
    from django.conf import settings

    from bench.send_throughput import make_contacts, make_messages
    from channels_app.providers.registry import reset_providers
    from messaging.services import message_deliver

    _, url = c.start_simulator(0, name="simulator-profile")
    settings.TWILIO_API_BASE_URL = url
    reset_providers()
    ids = make_messages(make_contacts(LOOPS + 20))
    for mid in ids[:20]:
        message_deliver(message_id=mid)
    rest = iter(ids[20:])
    return lambda: message_deliver(message_id=next(rest))


def target_advance():
    from bench.scheduler import make_due, setup_journey
    from journeys.engine import enrollment_advance
    from journeys.models import Enrollment
    from messaging.models import Contact

    Contact.objects.bulk_create([Contact(external_id=f"p-{i}") for i in range(LOOPS + 20)])
    journey, wait = setup_journey()
    make_due(journey, wait, list(Contact.objects.values_list("id", flat=True)))
    ids = iter(Enrollment.objects.order_by("id").values_list("id", flat=True))
    for _ in range(20):
        enrollment_advance(enrollment_id=next(ids))
    return lambda: enrollment_advance(enrollment_id=next(ids))


def target_advance_batch():
    """What advance_enrollments runs: enrollments_advance on ADVANCE_BATCH ids per call."""
    from bench.scheduler import make_due, setup_journey
    from journeys.engine import ADVANCE_BATCH, enrollments_advance
    from journeys.models import Enrollment
    from messaging.models import Contact

    n = (LOOPS + 2) * ADVANCE_BATCH
    Contact.objects.bulk_create([Contact(external_id=f"p-{i}") for i in range(n)], batch_size=5000)
    journey, wait = setup_journey()
    make_due(journey, wait, list(Contact.objects.values_list("id", flat=True)))
    ids = list(Enrollment.objects.order_by("id").values_list("id", flat=True))
    batches = iter([ids[i : i + ADVANCE_BATCH] for i in range(0, n, ADVANCE_BATCH)])
    for _ in range(2):
        enrollments_advance(enrollment_ids=next(batches))

    def call():
        enrollments_advance(enrollment_ids=next(batches))

    call.per_call = ADVANCE_BATCH  # type: ignore[attr-defined]
    return call


def target_ingest():
    from rest_framework.test import APIClient

    from journeys.blueprints import install_blueprints
    from messaging.api_auth import ALL_SCOPES
    from messaging.models import ApiKey

    install_blueprints(activate=True)
    _, key = ApiKey.objects.create_key(name="bench", scopes=list(ALL_SCOPES))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    counter = iter(range(10**9))

    def post():
        i = next(counter)
        body = {
            "name": "order.completed",
            "contact": {"external_id": f"cust-{i % 100}", "phone": f"+1415555{i % 100:04d}"},
            "properties": {"order_id": f"k{i}"},
        }
        response = client.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"k{i}")
        assert response.status_code == 202, response.content

    for _ in range(100):
        post()
    return post


def target_timeline():
    from django.utils import timezone

    from messaging.api.touchpoints import TIMELINE_COLUMNS, timeline_rows
    from messaging.models import Contact, Touchpoint
    from messaging.selectors import contact_timeline

    contact = Contact.objects.create(external_id="tl")
    now = timezone.now()
    Touchpoint.objects.bulk_create(
        [
            Touchpoint(
                contact=contact,
                kind="sent",
                direction="outbound",
                channel="sms",
                occurred_at=now - dt.timedelta(seconds=i),
                data={"n": i},
                dedupe_key=f"tl:{i}",
            )
            for i in range(2000)
        ]
    )

    def page():
        rows = list(contact_timeline(contact_id=contact.pk).values(*TIMELINE_COLUMNS)[:51])
        return timeline_rows(rows[:50], contact.external_id)

    return page


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "target", choices=["deliver", "advance", "advance_batch", "ingest", "timeline"]
    )
    parser.add_argument("--html", default="")
    args = parser.parse_args()
    c.django_setup()
    from django.db import connection
    from pyinstrument import Profiler

    with c.bench_services():
        call = globals()[f"target_{args.target}"]()
        counter = QueryCounter()
        profiler = Profiler(interval=0.0005)
        with connection.execute_wrapper(counter):
            profiler.start()
            seconds, _ = c.timed(lambda: [call() for _ in range(LOOPS)])
            profiler.stop()
        per = getattr(call, "per_call", 1)  # items (enrollments) handled per call
        print(
            f"{args.target}: {seconds / LOOPS / per * 1000:.2f} ms per item under the "
            f"profiler, {counter.count / LOOPS / per:.2f} queries per item ({per} per call)"
        )
        print(profiler.output_text(unicode=False, color=False))
        if args.html:
            with open(args.html, "w") as out:
                out.write(profiler.output_html())


if __name__ == "__main__":
    main()
