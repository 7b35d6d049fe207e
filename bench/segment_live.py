"""8. Live segments: what marking a changed contact costs the event ingest path, and what
applying a batch of changed contacts costs against the full recompute it saves.

- Ingest: `event_ingest` (stored and applied in one transaction, in-process; no journey
  matches) events/s with SEGMENT_LIVE_UPDATES on (each commit appends one row to
  audiences_segmentdirtycontact) vs off, alternating event by event in the same run, from
  the median latency of each side. Goal: >= 0.9x.
- Drain: `segments_apply_changed` of BENCH_LIVE_BATCH changed contacts (attributes flipped,
  marked) across the segments below, vs `segment_recompute` of the same segments over all
  N contacts (the only way before). Lower is better; the ratio shrinks as N grows.

Segments: issue 13's example audience (Jakarta, pro/team, marketing-SMS reachable, >= 2
orders of >= 100 in 90 days), "pro plan", "reachable by email", "ordered in 30 days",
"everyone".
"""

from __future__ import annotations

import os
import time

from bench import common as c
from bench.segment_count import DEFINITION, build

BATCH = int(os.environ.get("BENCH_LIVE_BATCH", "1000"))
INGEST_EVENTS = int(os.environ.get("BENCH_LIVE_INGEST", c.scaled(50_000, 300)))
SEGMENTS = {
    "example": DEFINITION,
    "pro": {"attribute": "plan", "op": "eq", "value": "pro"},
    "email": {"reachable": "email"},
    "recent": {"event": "order.completed", "within_days": 30},
    "everyone": {"all": []},
}


def main() -> None:
    c.django_setup(DJANGO_SETTINGS_MODULE="bench.settings")
    from bench.segment_count import CONTACTS, EVENTS

    c.header(
        "8. Live segments",
        contacts=f"{CONTACTS:,}",
        events=f"{EVENTS:,}",
        segments=len(SEGMENTS),
        batch=f"{BATCH} changed contacts",
        ingest=f"{INGEST_EVENTS} events per run, half of them marking",
    )
    with c.bench_services():
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone

        from audiences.live import segments_apply_changed
        from audiences.models import Segment, SegmentDirtyContact
        from audiences.services import segment_create, segment_recompute
        from journeys.services import event_ingest
        from messaging.models import Contact

        seconds, _ = c.timed(build)
        print(f"    built in {seconds:.1f} s", flush=True)
        for slug, definition in SEGMENTS.items():
            segment_create(name=slug, slug=slug, kind="dynamic", definition=definition)
        segments = list(Segment.objects.order_by("pk"))
        for segment in segments:
            segment_recompute(segment=segment, now=timezone.now())
        contacts = list(Contact.objects.order_by("pk")[:INGEST_EVENTS])

        def ingest_run() -> tuple[float, float]:
            """Events/s with marking on and off, alternating event by event (the shared
            machine's load drifts over seconds; adjacent events see the same load), from
            the median latency of each side."""
            latencies: dict[bool, list[float]] = {True: [], False: []}
            for i, contact in enumerate(contacts):
                live = i % 2 == 0
                settings.SEGMENT_LIVE_UPDATES = live
                started = time.perf_counter()
                event_ingest(name="page.viewed", contact=contact, properties={"n": 1})
                latencies[live].append(time.perf_counter() - started)
            settings.SEGMENT_LIVE_UPDATES = True
            return 1 / c.median(latencies[True]), 1 / c.median(latencies[False])

        on, off = [], []
        ingest_run()  # warm-up
        for _ in range(c.RUNS):
            with_marking, without = ingest_run()
            on.append(with_marking)
            off.append(without)
        c.report(
            c.Figure(
                "segment_live",
                "event_ingest with live marking",
                "events/s",
                on,
                "event_ingest, marking off",
                off,
                goal=">= 0.9",
            )
        )

        flip = 0

        def change_batch() -> None:
            nonlocal flip
            flip += 1
            plan = "pro" if flip % 2 else "free"
            with connection.cursor() as cur:
                cur.execute(
                    "UPDATE messaging_contact SET attributes = attributes || "
                    "jsonb_build_object('plan', %s::text) WHERE id IN "
                    "(SELECT id FROM messaging_contact ORDER BY id LIMIT %s)",
                    [plan, BATCH],
                )
                cur.execute(
                    "INSERT INTO audiences_segmentdirtycontact (contact_id) "
                    "SELECT id FROM messaging_contact ORDER BY id LIMIT %s",
                    [BATCH],
                )

        def drain_ms() -> float:
            SegmentDirtyContact.objects.all().delete()
            change_batch()
            started = time.perf_counter()
            done = segments_apply_changed(batch_size=BATCH)
            assert done == BATCH, done
            return (time.perf_counter() - started) * 1000

        def recompute_ms() -> float:
            change_batch()
            SegmentDirtyContact.objects.all().delete()
            started = time.perf_counter()
            for segment in segments:
                segment_recompute(segment=segment, now=timezone.now())
            return (time.perf_counter() - started) * 1000

        drain_ms()  # warm-up
        drains, recomputes = [], []
        for _ in range(c.RUNS):
            recomputes.append(recompute_ms())
            drains.append(drain_ms())
        c.report(
            c.Figure(
                "segment_live",
                f"apply {BATCH} changed contacts to {len(segments)} segments",
                "ms",
                drains,
                f"full recompute of the {len(segments)} segments",
                recomputes,
                higher_is_better=False,
            )
        )


if __name__ == "__main__":
    main()
