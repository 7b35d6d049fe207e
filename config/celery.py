"""The Celery app and its beat schedule. No business logic here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("touchline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _beat_schedule(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = {
        "sweep-stale-messages": {
            "task": "messaging.tasks.sweep_messages",
            "schedule": settings.SWEEP_INTERVAL_SECONDS,
        },
        "advance-due-enrollments": {
            "task": "journeys.schedule_due",
            "schedule": settings.SCHEDULER_INTERVAL_SECONDS,
        },
        "dispatch-due-webhooks": {
            "task": "outbound.dispatch_due_webhooks",
            "schedule": settings.OUTBOUND_WEBHOOK_DISPATCH_INTERVAL_SECONDS,
        },
    }
