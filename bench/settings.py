"""Settings for the benchmark's gunicorn only (DJANGO_SETTINGS_MODULE=bench.settings): the
product's settings with bench/urls.py (the product's URLs plus bare comparison endpoints)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
