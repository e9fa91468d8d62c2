"""Settings, all from the environment (django-environ). The embedded default needs none:
SQLite, local-memory cache, Celery eager."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "[::1]", "testserver"]),
    REDIS_URL=(str, ""),
)

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY", default="embedded-default-insecure-" + "k" * 32)
ALLOWED_HOSTS = env("ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "modelhub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pam.urls"
WSGI_APPLICATION = "pam.wsgi.application"
ASGI_APPLICATION = "pam.asgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# A persistent connection (CONN_MAX_AGE > 0) that a database restart broke is replaced
# before a request uses it, instead of failing that request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # An unreachable server fails a connection in seconds, not after the kernel's SYN retries.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
EMBEDDED = not REDIS_URL
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that does not answer fails a cache call in a second, never hangs it.
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic tasks keep no results; a caller that wants one asks (ignore_result=False).
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TIMEZONE = "UTC"
# Schedules live in the database (admin -> Periodic tasks); defaults come from a migration.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Cost alerts are mailed through Django's email backend (console in the embedded default).
EMAIL_BACKEND = env(
    "EMAIL_BACKEND", default="django.core.mail.backends." + ("console" if EMBEDDED else "smtp") + ".EmailBackend"
)
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="pam-hub@localhost")

# Websocket chat (Django Channels): its channel layer is Redis when REDIS_URL is set, so that
# every worker can reach every socket; in-memory (one process) in the embedded default.
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=None)  # only for collectstatic; not needed to serve
# The admin's CSS and JS, served by the app itself (WhiteNoise), straight from the installed
# apps: no collectstatic step, no separate web server needed for the console.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "modelhub.api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # One handler, the hub's error shapes (native, or OpenAI's under /v1/); never a traceback.
    "EXCEPTION_HANDLER": "modelhub.api.errors.hub_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "PAM Model Hub API",
    "DESCRIPTION": "Chat with failover across providers (native and OpenAI-compatible), the hot-swap "
    "admin API, metrics and health.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from the app's own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

MODELHUB = {
    # A failed model sits out this long unless the provider said otherwise (Retry-After).
    "COOLDOWN_SECONDS": env.float("MODELHUB_COOLDOWN_SECONDS", default=300.0),
    # Each time in a row a model is taken out, its cooldown grows by the one above, up to this.
    "COOLDOWN_MAX_SECONDS": env.float("MODELHUB_COOLDOWN_MAX_SECONDS", default=3600.0),
    # After its cooldown one request at a time (across processes) tries a model; another
    # may try once that trial has held the model this long without a verdict.
    "TRIAL_TIMEOUT_SECONDS": env.float("MODELHUB_TRIAL_TIMEOUT_SECONDS", default=30.0),
    # Bodies above this are refused with 413 before they are parsed: room for the images
    # below as base64 (4/3 of their size) beside the text.
    "MAX_BODY_BYTES": env.int("MODELHUB_MAX_BODY_BYTES", default=28_000_000),
    # Images (data: URLs, decoded) above these sizes are refused with 413: Anthropic's own
    # limit per image; OpenAI's per request.
    "MAX_IMAGE_BYTES": env.int("MODELHUB_MAX_IMAGE_BYTES", default=5 * 1024 * 1024),
    "MAX_REQUEST_IMAGE_BYTES": env.int("MODELHUB_MAX_REQUEST_IMAGE_BYTES", default=20 * 1024 * 1024),
    "MAX_MESSAGES": env.int("MODELHUB_MAX_MESSAGES", default=1000),
    # Calibration of complexity routes: days of ledger read, and the fewest scored requests to act on.
    "CALIBRATION_DAYS": env.int("MODELHUB_CALIBRATION_DAYS", default=7),
    "CALIBRATION_MIN_SAMPLES": env.int("MODELHUB_CALIBRATION_MIN_SAMPLES", default=200),
    # Price differences found by the daily check are applied at once (audited) instead of waiting in admin.
    "PRICES_AUTO_APPLY": env.bool("MODELHUB_PRICES_AUTO_APPLY", default=False),
    # An answer from a provider past this is cut (a server error: fail over, or end the stream).
    "MAX_RESPONSE_BYTES": env.int("MODELHUB_MAX_RESPONSE_BYTES", default=32 * 1024 * 1024),
    # The usage ledger is written in batches by one background writer.
    "LEDGER_FLUSH_SECONDS": env.float("MODELHUB_LEDGER_FLUSH_SECONDS", default=0.25),
    "LEDGER_BATCH_SIZE": env.int("MODELHUB_LEDGER_BATCH_SIZE", default=500),
    # Off in tests, which flush the ledger themselves inside their transaction.
    "LEDGER_BACKGROUND": env.bool("MODELHUB_LEDGER_BACKGROUND", default=True),
    # Rollouts: what a request leaves behind (a canary outcome counted and judged, a shadow copy
    # dispatched) is done by a background thread. Off in tests, which run it themselves.
    "ROLLOUT_BACKGROUND": env.bool("MODELHUB_ROLLOUT_BACKGROUND", default=True),
    # Where each process spools its usage rows until they are stored (default: beside the
    # SQLite database, or var/spool-<database id> for any other; none for an in-memory one).
    "SPOOL_DIR": env("MODELHUB_SPOOL_DIR", default=""),
    # How often each writer thread replays the spools of processes that died.
    "LEDGER_SWEEP_SECONDS": env.float("MODELHUB_LEDGER_SWEEP_SECONDS", default=60.0),
    # Hosts an admin-typed base_url may name although they are not public (Ollama, vLLM).
    "BASE_URL_ALLOWLIST": env.list("MODELHUB_BASE_URL_ALLOWLIST", default=[]),
    # The embedded default accepts any base_url (it talks to the built-in simulator).
    "ALLOW_PRIVATE_BASE_URLS": env.bool("MODELHUB_ALLOW_PRIVATE_BASE_URLS", default=EMBEDDED),
    # The DNS resolver (an aiohttp AbstractResolver class) behind the guard that applies the two
    # rules above to every address an outbound connection is made to.
    "DNS_RESOLVER": env("MODELHUB_DNS_RESOLVER", default="aiohttp.resolver.DefaultResolver"),
    # Second name the Google key may go by, as the google-genai SDK accepts it.
    "KEY_ENV_ALIASES": {"GOOGLE_API_KEY": ("GEMINI_API_KEY", "GOOGLE_AI_API_KEY")},
    # Safety net: a snapshot older than this is reloaded even if no bump was seen.
    "SNAPSHOT_MAX_AGE_SECONDS": env.float("MODELHUB_SNAPSHOT_MAX_AGE_SECONDS", default=30.0),
    "VERSION_KEY": env("MODELHUB_VERSION_KEY", default="modelhub:config-version"),
    # Health changes travel on their own version: a cooldown reloads health rows only.
    "HEALTH_VERSION_KEY": env("MODELHUB_HEALTH_VERSION_KEY", default="modelhub:health-version"),
    # Without Redis: the file whose stat tells every process on the machine of a change
    # (default: beside the SQLite database).
    "VERSION_FILE": env("MODELHUB_VERSION_FILE", default=""),
    # Per-attempt time to first token of a stream when its route sets none.
    "TTFT_TIMEOUT_SECONDS": env.float("MODELHUB_TTFT_TIMEOUT_SECONDS", default=30.0),
    # A model is probed at most once in this window, however many workers run the schedule.
    "PROBE_LOCK_SECONDS": env.float("MODELHUB_PROBE_LOCK_SECONDS", default=240.0),
    # Ledger rows older than this are deleted, once their day is rolled up into DailyCost.
    "USAGE_RETENTION_DAYS": env.int("MODELHUB_USAGE_RETENTION_DAYS", default=90),
    # Live model statistics: the rolling window (whole minutes, shared by every process through
    # Redis) and how often each process re-reads it for routing, in the background.
    "STATS_WINDOW_SECONDS": env.float("MODELHUB_STATS_WINDOW_SECONDS", default=900.0),
    "STATS_REFRESH_SECONDS": env.float("MODELHUB_STATS_REFRESH_SECONDS", default=5.0),
    # Who gets cost alerts when a rule names no one.
    "ALERT_EMAILS": env.list("MODELHUB_ALERT_EMAILS", default=[]),
    # With Redis unreachable, requests of a key with an RPM limit are allowed (fail open: the
    # limit protects capacity) and those of a key with a daily budget get 503 until Redis
    # answers (fail closed: it is money, and the budget holds only if every request counts).
    "RPM_FAIL_OPEN": env.bool("MODELHUB_RPM_FAIL_OPEN", default=True),
    "BUDGET_FAIL_OPEN": env.bool("MODELHUB_BUDGET_FAIL_OPEN", default=False),
    # A bad environment override (modelhub.E001-E003) stops the web server's and the worker's
    # start-up unless this is true: then they start with the bad settings ignored.
    "START_DEGRADED": env.bool("MODELHUB_START_DEGRADED", default=False),
    # Chat requests one process answers at once; past it, 503 with Retry-After at once (0 = no
    # limit). Sized by bench/load.sh: about what one worker relays on one core (paced streams).
    "MAX_INFLIGHT": env.int("MODELHUB_MAX_INFLIGHT", default=250),
    # From this many chat requests in flight until no more than half that many are, the cyclic
    # garbage collector waits: it would traverse every request in flight again and again and
    # free nothing (modelhub.api.gcpause; 0 = never pause). Read when the server starts.
    "GC_PAUSE_INFLIGHT": env.int("MODELHUB_GC_PAUSE_INFLIGHT", default=200),
    # Who may read GET /metrics (Prometheus): a scraper presenting this bearer token (none:
    # token access off), or any client from these networks (none: network access off).
    "METRICS_TOKEN": env("MODELHUB_METRICS_TOKEN", default=""),
    "METRICS_ALLOWED_NETWORKS": env.list("MODELHUB_METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]),
}

# Log lines on stderr: plain text in the embedded default, one JSON object a line with Redis
# (or MODELHUB_LOG_FORMAT=json); each carries the request id of the work in hand, in the web
# process and in the Celery tasks a request starts (modelhub.observability.logs). Every logger
# writes through the root's handler: the hub's, Django's (a 5xx it answered) and, in the
# worker, Celery's (pam.celery keeps Celery from installing handlers of its own).
LOG_FORMAT = env("MODELHUB_LOG_FORMAT", default="plain" if EMBEDDED else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "modelhub.observability.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"()": "modelhub.observability.logs.PlainFormatter"},
        "json": {"()": "modelhub.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "modelhub.observability.logs.StderrHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "modelhub": {"level": env("MODELHUB_LOG_LEVEL", default="INFO")},
        "django": {"handlers": [], "level": "INFO"},  # through the root's handler, not Django's own
        "celery": {"level": "WARNING"},  # a worker's -l/--loglevel sets it
    },
}
