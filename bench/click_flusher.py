"""The click flush as beat and a worker run it (messaging.tasks.flush_clicks every
CLICK_FLUSH_SECONDS), as a process of its own beside the benchmark's gunicorn: the clicks'
inserts still cost the machine's CPU and database during the measurement, off the request."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    import django

    django.setup()
    from django.conf import settings

    from messaging.tasks import flush_clicks

    while True:
        started = time.monotonic()
        flush_clicks()
        time.sleep(max(0.0, settings.CLICK_FLUSH_SECONDS - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
