"""Touchline settings: one module, driven by environment variables (12-factor).

Unset variables mean the embedded default: SQLite (WAL, IMMEDIATE transactions), Celery on
kombu's filesystem transport, and provider adapters pointed at the local simulator. Secrets
never have a production default: with DEBUG off, SECRET_KEY must come from the environment;
in embedded/simulator mode, development secrets are generated once under TOUCHLINE_DATA_DIR.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("TOUCHLINE_DATA_DIR", default=str(BASE_DIR / ".data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)


def _dev_secret(name: str, factory=lambda: secrets.token_urlsafe(48)) -> str:
    """A secret generated once per data folder, for development and simulator use only."""
    folder = DATA_DIR / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    if not path.exists():
        path.write_text(factory())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment, or set DEBUG=1 for a "
            "development key generated under TOUCHLINE_DATA_DIR."
        )
    SECRET_KEY = _dev_secret("django_secret_key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
WEB_PORT = env.int("WEB_PORT", default=8000)
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default=f"http://127.0.0.1:{WEB_PORT}").rstrip("/")
# The mailto part of List-Unsubscribe on marketing email ("" = https only). Touchline does
# not read that mailbox: whoever runs it must act on the requests (the https link is RFC 8058).
UNSUBSCRIBE_MAILTO = env("UNSUBSCRIBE_MAILTO", default="")
# The preference center's signed links (/preferences/<token>) stop working after this many
# days (a fresh one comes with every marketing email).
PREFERENCES_LINK_MAX_AGE_DAYS = env.int("PREFERENCES_LINK_MAX_AGE_DAYS", default=365)
# Appended to marketing SMS that do not mention STOP already ("" turns it off).
SMS_STOP_LINE = env("SMS_STOP_LINE", default="Reply STOP to opt out")
# Link tracking: http(s) links in outbound bodies become PUBLIC_BASE_URL/l/<token> at send time.
LINK_TRACKING = env.bool("LINK_TRACKING", default=True)
# Clicks sooner than this after sent/delivered are a scanner's, recorded but not counted.
LINK_BOT_SECONDS = env.float("LINK_BOT_SECONDS", default=1.0)
# With REDIS_URL set, a click is one Redis round trip (messaging/click_buffer.py): the
# destination comes from a cache, the click is buffered, and a beat task writes the buffered
# clicks as touchpoints every CLICK_FLUSH_SECONDS (so they reach the timeline that late).
CLICK_FLUSH_SECONDS = env.float("CLICK_FLUSH_SECONDS", default=2.0)
# Clicks written per statement by the flush.
CLICK_FLUSH_BATCH = env.int("CLICK_FLUSH_BATCH", default=1000)
# How long a link's destination stays cached in Redis (a miss reads the database again).
LINK_CACHE_SECONDS = env.int("LINK_CACHE_SECONDS", default=7 * 24 * 3600)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "adminsortable2",
    "audit",
    "channels_app",
    "messaging",
    "audiences",
    "journeys",
    "campaigns",
    "insights",
    "outbound",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "messaging.middleware.ApiBodySizeLimitMiddleware",
    # Before CommonMiddleware, whose APPEND_SLASH cannot redirect a POST.
    "messaging.middleware.ApiPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "messaging.middleware.UnsafeTextMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'touchline.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers queue on busy_timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests with live servers and workers run threads against the test database; a file
    # (not shared-cache memory, whose table locks ignore the busy timeout) keeps it usable.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A health check is a cheap query at the start of every request (and task) that reuses a
    # connection, so a connection that died while idle (a database restart, a failover) is
    # replaced instead of failing that request with a 500. On by default; turning it off saves
    # one round trip per request at that risk.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Request bodies: API requests over API_MAX_BODY_BYTES get 413; the inbound-parse view
# raises its own limit.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=API_MAX_BODY_BYTES)
INBOUND_PARSE_MAX_BYTES = env.int("INBOUND_PARSE_MAX_BYTES", default=30 * 1024 * 1024)
# JSON bodies nested deeper than this (objects and arrays) are refused with a 400.
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)
# An inbound email's text and HTML bodies are each stored cut to this many bytes (flagged
# `truncated` on its message and touchpoint); attachments are kept as references only.
INBOUND_EMAIL_MAX_BYTES = env.int("INBOUND_EMAIL_MAX_BYTES", default=128 * 1024)

# --- Logging --------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "twilio.http_client": {"level": "WARNING"},
    },
}

# --- Cache (API throttling) -----------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "touchline",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------
# The host part means nothing to the filesystem transport; naming one keeps kombu from
# warning "No hostname was supplied" on every start.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem"):
    _broker_dir = DATA_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # acks_late tasks must finish (or be redelivered) within the visibility timeout.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# Defaults for tasks that declare none. Enforced in every pool, threads included, by
# config/task_limits.py (Celery itself enforces them only in prefork).
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
# Every database statement (and lock wait) of a connection a task opens (PostgreSQL).
TASK_STATEMENT_TIMEOUT_SECONDS = env.float("TASK_STATEMENT_TIMEOUT_SECONDS", default=30.0)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# The pool and concurrency are given on the worker's command line (Procfile:
# CELERY_WORKER_POOL, CELERY_WORKER_CONCURRENCY); a setting here would override --pool.
# Production layout: one `worker` process per core (2 x 8 threads on 2 cores; a threads-pool
# worker is one process, so one GIL, one core of Python) and one `beat` process. Not more
# than one worker process on the embedded default: without Redis the sender rate limit is
# kept per process (channels_app/ratelimit.py).

# --- Delivery -------------------------------------------------------------------------
MESSAGE_MAX_ATTEMPTS = env.int("MESSAGE_MAX_ATTEMPTS", default=6)
MESSAGE_RETRY_BASE_SECONDS = env.float("MESSAGE_RETRY_BASE_SECONDS", default=5.0)
MESSAGE_RETRY_MAX_SECONDS = env.float("MESSAGE_RETRY_MAX_SECONDS", default=900.0)
# A message stuck in `sending` longer than this (a worker died mid-call) becomes `unknown`.
MESSAGE_SENDING_TIMEOUT_SECONDS = env.int("MESSAGE_SENDING_TIMEOUT_SECONDS", default=600)
# A `queued` message whose task never ran (lost between commit and enqueue) is re-queued.
MESSAGE_QUEUED_LEASE_SECONDS = env.int("MESSAGE_QUEUED_LEASE_SECONDS", default=120)
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=30.0)
# An `unknown` message (the worker died mid-call, or the provider never answered) that no status
# callback settled within this long is looked up at the provider by a beat task (the same
# interval as the sweeper), and again this often while it is not found.
UNKNOWN_RECONCILE_AFTER_SECONDS = env.int("UNKNOWN_RECONCILE_AFTER_SECONDS", default=900)
# Still not found this long after it became `unknown`: `failed`, "not accepted by provider".
# 24 h outlasts Twilio's queue (10 h) and SendGrid's event-webhook retries (24 h).
UNKNOWN_FINAL_DEADLINE_SECONDS = env.int("UNKNOWN_FINAL_DEADLINE_SECONDS", default=86400)
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", default=10.0)
# Per-sender send rate (messages/s; 0 = no limit), shared by all workers through Redis. A
# US long code takes ~1/s, a short code 100/s, a WhatsApp sender 80/s.
SENDER_RATE_LIMITS = {
    "sms": env.float("TWILIO_SMS_MPS", default=0.0),
    "whatsapp": env.float("TWILIO_WHATSAPP_MPS", default=80.0),
    "email": env.float("SENDGRID_MPS", default=0.0),
}
# A worker sleeps for a slot at most this long; further away, the message is re-queued.
SENDER_RATE_MAX_WAIT_SECONDS = env.float("SENDER_RATE_MAX_WAIT_SECONDS", default=2.0)
# Marketing frequency cap across all journeys: at most N messages per contact per window.
FREQUENCY_CAP_MESSAGES = env.int("FREQUENCY_CAP_MESSAGES", default=3)
FREQUENCY_CAP_WINDOW_HOURS = env.int("FREQUENCY_CAP_WINDOW_HOURS", default=24)

# --- Staff-authored templates (Liquid) -------------------------------------------------
# Every render (save-time check, preview, send) runs under these; a template over a limit is
# refused with an error naming it (messaging/template_limits.py).
TEMPLATE_MAX_LOOP_ITERATIONS = env.int("TEMPLATE_MAX_LOOP_ITERATIONS", default=10_000)
TEMPLATE_MAX_RANGE_SIZE = env.int("TEMPLATE_MAX_RANGE_SIZE", default=10_000)
TEMPLATE_MAX_OUTPUT_BYTES = env.int("TEMPLATE_MAX_OUTPUT_BYTES", default=200_000)
TEMPLATE_MAX_LOCALS_BYTES = env.int("TEMPLATE_MAX_LOCALS_BYTES", default=10_000)
TEMPLATE_MAX_CONTEXT_DEPTH = env.int("TEMPLATE_MAX_CONTEXT_DEPTH", default=30)
TEMPLATE_MAX_NESTING_DEPTH = env.int("TEMPLATE_MAX_NESTING_DEPTH", default=30)
TEMPLATE_MAX_RENDER_SECONDS = env.float("TEMPLATE_MAX_RENDER_SECONDS", default=2.0)

# --- Journeys -------------------------------------------------------------------------
# An accepted API event not applied after this long (its kick was lost) is applied by the
# beat sweeper, which runs every SWEEP_INTERVAL_SECONDS.
EVENT_SWEEP_AFTER_SECONDS = env.float("EVENT_SWEEP_AFTER_SECONDS", default=10.0)
SCHEDULER_INTERVAL_SECONDS = env.float("SCHEDULER_INTERVAL_SECONDS", default=2.0)
# How often beat recomputes every dynamic segment's membership (entered/left history).
SEGMENT_RECOMPUTE_INTERVAL_SECONDS = env.float("SEGMENT_RECOMPUTE_INTERVAL_SECONDS", default=300.0)
# Live segments: a contact that changes (fields, consent, an event, a message) is marked, and
# a beat task every SEGMENT_LIVE_INTERVAL_SECONDS re-evaluates every dynamic segment for the
# marked contacts, SEGMENT_LIVE_BATCH_SIZE at a time, then hands new entries and exits to
# journeys ("enters / leaves segment" triggers). SEGMENT_LIVE_UPDATES=0 stops the marking
# (the periodic recompute alone then keeps membership).
SEGMENT_LIVE_UPDATES = env.bool("SEGMENT_LIVE_UPDATES", default=True)
SEGMENT_LIVE_INTERVAL_SECONDS = env.float("SEGMENT_LIVE_INTERVAL_SECONDS", default=5.0)
SEGMENT_LIVE_BATCH_SIZE = env.int("SEGMENT_LIVE_BATCH_SIZE", default=1000)
# The admin builder's live count gives up after this long (PostgreSQL statement timeout).
SEGMENT_PREVIEW_TIMEOUT_SECONDS = env.float("SEGMENT_PREVIEW_TIMEOUT_SECONDS", default=5.0)
# Contact import (docs/IMPORT.md): rows per batch (one transaction and checkpoint each), the
# largest upload the API takes (the admin has no limit of its own), and how long a running
# import's checkpoint may stand still before the beat sweeper queues it again.
IMPORT_BATCH_SIZE = env.int("IMPORT_BATCH_SIZE", default=5000)
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024)
IMPORT_STALL_SECONDS = env.float("IMPORT_STALL_SECONDS", default=600.0)
# How long a process may reuse the set of event names active journeys use (to flag an event
# that starts nothing); saving a journey or step drops it at once in the shared cache.
JOURNEY_EVENTS_CACHE_SECONDS = env.float("JOURNEY_EVENTS_CACHE_SECONDS", default=5.0)
# How long a process may reuse which journeys and broadcasts count which events as conversions
# (insights.selectors); saving a journey or a broadcast drops it at once in the shared cache.
ATTRIBUTION_CACHE_SECONDS = env.float("ATTRIBUTION_CACHE_SECONDS", default=5.0)
SCHEDULER_BATCH_SIZE = env.int("SCHEDULER_BATCH_SIZE", default=200)
# A claimed enrollment whose worker died is claimable again after this lease.
SCHEDULER_LEASE_SECONDS = env.int("SCHEDULER_LEASE_SECONDS", default=60)

# --- Broadcasts (campaigns) ---------------------------------------------------------------
# How often beat claims due broadcast recipients (a late tick's throttle catch-up: 5 of these).
BROADCAST_DISPATCH_INTERVAL_SECONDS = env.float("BROADCAST_DISPATCH_INTERVAL_SECONDS", default=2.0)
# Recipients claimed per broadcast per claim (unthrottled); sent in tasks of BROADCAST_CHUNK.
BROADCAST_BATCH_SIZE = env.int("BROADCAST_BATCH_SIZE", default=500)
BROADCAST_CHUNK = env.int("BROADCAST_CHUNK", default=50)
# A claimed recipient whose worker died is claimable again after this lease.
BROADCAST_LEASE_SECONDS = env.int("BROADCAST_LEASE_SECONDS", default=60)
# Local-time sends: a zone whose send time passed at launch by at most this much is sent at
# once; by more, its recipients are skipped ("the local send time had already passed").
BROADCAST_LOCAL_LATE_GRACE_MINUTES = env.int("BROADCAST_LOCAL_LATE_GRACE_MINUTES", default=60)
# How often the beat task choosing test-then-winner broadcasts' winners runs (seconds).
BROADCAST_WINNER_INTERVAL_SECONDS = env.int("BROADCAST_WINNER_INTERVAL_SECONDS", default=60)

# --- Providers ------------------------------------------------------------------------
SIMULATOR_HOST = env("SIMULATOR_HOST", default="127.0.0.1")
SIMULATOR_PORT = env.int("SIMULATOR_PORT", default=8025)
SIMULATOR_URL = env("SIMULATOR_URL", default=f"http://{SIMULATOR_HOST}:{SIMULATOR_PORT}")

TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_SIMULATED = not TWILIO_ACCOUNT_SID
if TWILIO_SIMULATED:
    TWILIO_ACCOUNT_SID = "AC" + "0" * 30 + "51"
    TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="") or _dev_secret(
        "twilio_auth_token", lambda: secrets.token_hex(16)
    )
    TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default=SIMULATOR_URL)
else:
    TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
    TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="https://api.twilio.com")
TWILIO_SMS_FROM = env("TWILIO_SMS_FROM", default="+15005550006" if TWILIO_SIMULATED else "")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_WHATSAPP_FROM = env(
    "TWILIO_WHATSAPP_FROM", default="+14155238886" if TWILIO_SIMULATED else ""
)

SENDGRID_API_KEY = env("SENDGRID_API_KEY", default="")
SENDGRID_SIMULATED = not SENDGRID_API_KEY
SENDGRID_FROM_EMAIL = env(
    "SENDGRID_FROM_EMAIL", default="hello@touchline.example" if SENDGRID_SIMULATED else ""
)
SENDGRID_FROM_NAME = env("SENDGRID_FROM_NAME", default="")
INBOUND_EMAIL_DOMAIN = env(
    "INBOUND_EMAIL_DOMAIN", default="reply.touchline.example" if SENDGRID_SIMULATED else ""
)


def _dev_ecdsa_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


if SENDGRID_SIMULATED:
    SENDGRID_API_KEY = _dev_secret("sendgrid_api_key", lambda: "SG." + secrets.token_urlsafe(32))
    SENDGRID_API_HOST = env("SENDGRID_API_HOST", default=SIMULATOR_URL)
    # The simulator signs its event webhooks with this private key; Touchline verifies with
    # the public half, exactly as it would verify SendGrid's own signature.
    SIMULATOR_SENDGRID_SIGNING_KEY = _dev_secret("sendgrid_webhook_key.pem", _dev_ecdsa_private_key)
    _default_public_key = ""
    if not env("SENDGRID_WEBHOOK_PUBLIC_KEY", default=""):
        from cryptography.hazmat.primitives import serialization

        _priv = serialization.load_pem_private_key(SIMULATOR_SENDGRID_SIGNING_KEY.encode(), None)
        _default_public_key = base64.b64encode(
            _priv.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
    SENDGRID_WEBHOOK_PUBLIC_KEY = env("SENDGRID_WEBHOOK_PUBLIC_KEY", default=_default_public_key)
    INBOUND_PARSE_SECRET = env("INBOUND_PARSE_SECRET", default="") or _dev_secret(
        "inbound_parse_secret", lambda: secrets.token_urlsafe(24)
    )
else:
    SENDGRID_API_HOST = env("SENDGRID_API_HOST", default="https://api.sendgrid.com")
    SIMULATOR_SENDGRID_SIGNING_KEY = ""
    SENDGRID_WEBHOOK_PUBLIC_KEY = env("SENDGRID_WEBHOOK_PUBLIC_KEY", default="")
    INBOUND_PARSE_SECRET = env("INBOUND_PARSE_SECRET", default="")

# Accept SendGrid event webhooks signed at most this long ago (replay window).
SENDGRID_WEBHOOK_MAX_AGE_SECONDS = env.int("SENDGRID_WEBHOOK_MAX_AGE_SECONDS", default=300)

# Dotted paths of the adapter class per channel (see channels_app/providers/registry.py).
TOUCHLINE_PROVIDERS = {
    "sms": "channels_app.providers.twilio.TwilioSmsProvider",
    "whatsapp": "channels_app.providers.twilio.TwilioWhatsAppProvider",
    "email": "channels_app.providers.sendgrid.SendGridEmailProvider",
}

HELP_TEXT = env(
    "HELP_TEXT",
    default="Touchline demo: reply STOP to unsubscribe, START to resubscribe.",
)

# --- Outbound webhooks (to backend systems) --------------------------------------------
OUTBOUND_WEBHOOK_DISPATCH_INTERVAL_SECONDS = env.float(
    "OUTBOUND_WEBHOOK_DISPATCH_INTERVAL_SECONDS", default=10.0
)
OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = env.float("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
OUTBOUND_WEBHOOK_RETRY_DELAYS = env.list(
    "OUTBOUND_WEBHOOK_RETRY_DELAYS", cast=int, default=[5, 300, 1800, 7200, 18000, 36000]
)
OUTBOUND_WEBHOOK_MAX_RETRY_AFTER_SECONDS = env.int(
    "OUTBOUND_WEBHOOK_MAX_RETRY_AFTER_SECONDS", default=86400
)
OUTBOUND_WEBHOOK_LEASE_SECONDS = env.int("OUTBOUND_WEBHOOK_LEASE_SECONDS", default=120)
OUTBOUND_WEBHOOK_BATCH_SIZE = env.int("OUTBOUND_WEBHOOK_BATCH_SIZE", default=200)
OUTBOUND_WEBHOOK_DISABLE_AFTER = env.int("OUTBOUND_WEBHOOK_DISABLE_AFTER", default=15)
OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS = env.float(
    "OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS", default=1.0
)
# Webhooks go only to public addresses (checked after DNS, at every attempt). This list is the
# only way to reach a loopback/private/link-local one: IPs or CIDRs, each optionally with
# :port, e.g. "127.0.0.1:9000,10.20.0.0/16,[::1]:8080". Empty by default, embedded default
# included: the provider simulator receives no outbound webhooks, so nothing needs it.
OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = env.list("OUTBOUND_WEBHOOK_ALLOWED_NETWORKS", default=[])
# PEM CA bundle for verifying https:// receivers (e.g. a private CA); empty: certifi's bundle.
OUTBOUND_WEBHOOK_CA_BUNDLE = env("OUTBOUND_WEBHOOK_CA_BUNDLE", default="")
# Fernet keys (comma-separated) encrypting subscriptions' signing secrets at rest: the first
# encrypts, every one decrypts. Empty: one key derived from SECRET_KEY (HKDF-SHA256, see
# outbound/encryption.py). Rotate: put the new key first, run
# `manage.py rotate_webhook_secrets`, then drop the old key.
OUTBOUND_SECRET_KEYS = env.list("OUTBOUND_SECRET_KEYS", default=[])

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["messaging.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["messaging.api_auth.HasScopedAPIKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["messaging.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "messaging.schema.TouchlineAutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["messaging.api_auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env("API_RATE_LIMIT", default="1200/min")},
    # Proxies in front that append to X-Forwarded-For: the client address is the entry this
    # many from the end. 0 (the default) trusts only REMOTE_ADDR, so a client cannot choose
    # its own address for the failed-authentication throttle.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
}
API_KEY_CUSTOM_HEADER = None
# Failed API-key authentications allowed per client address and per key prefix within the
# window (a burst of N, then N per window); past it, 429 with Retry-After. 0 turns it off.
API_AUTH_FAILURE_LIMIT = env.int("API_AUTH_FAILURE_LIMIT", default=10)
API_AUTH_FAILURE_WINDOW_SECONDS = env.float("API_AUTH_FAILURE_WINDOW_SECONDS", default=60.0)
_ERRORS = "drf_standardized_errors.openapi_serializers"
SPECTACULAR_SETTINGS = {
    "TITLE": "Touchline API",
    "DESCRIPTION": "Omnichannel customer messaging: events, contacts, messages, touchpoints.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ValidationErrorEnum": f"{_ERRORS}.ValidationErrorEnum.choices",
        "ClientErrorEnum": f"{_ERRORS}.ClientErrorEnum.choices",
        "ServerErrorEnum": f"{_ERRORS}.ServerErrorEnum.choices",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        "drf_spectacular.hooks.postprocess_schema_enums",
        "messaging.schema.open_error_enums",
    ],
}
DRF_STANDARDIZED_ERRORS = {"ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True}
