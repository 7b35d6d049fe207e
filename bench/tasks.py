"""Bench-only Celery task: the bare no-op that send throughput is compared with.

Loaded only by the benchmark's workers (`celery -A config worker -I bench.tasks`); it takes
the same argument as `messaging.deliver_message` and runs with the same task options.
"""

from __future__ import annotations

from celery import shared_task

from messaging.tasks import DELIVERY_TASK_OPTIONS


@shared_task(name="bench.noop", **DELIVERY_TASK_OPTIONS)
def noop(message_id: str) -> str:
    return message_id
