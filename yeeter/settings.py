"""Yeeter settings: one module, everything read from the environment through ``yeeter.env``.

Embedded default (no variables set): SQLite under ``YEETER_DATA_DIR``, the in-memory channel
layer, runs executed in-process. Scale-out: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL``
(channels_redis) and ``CELERY_BROKER_URL`` (runs as Celery tasks).
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from yeeter.env import (
    env_bool,
    env_database,
    env_int,
    env_list,
    env_origins,
    env_path,
    env_proxy_ssl_header,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
DATA_DIR = env_path("YEETER_DATA_DIR", BASE_DIR / "data")
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string, or set DEBUG=1 for a "
            "development key generated at start-up."
        )
    SECRET_KEY = "dev-" + get_random_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

# -- HTTPS, and the TLS proxy in front (README "Deploying"; `manage.py check --deploy` is clean with them)
# YEETER_HTTPS=1 turns on the redirect to https and secure cookies; each can still be set on its own.
HTTPS = env_bool("YEETER_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS: the header it sets ("X-Forwarded-Proto: https"), so Django knows
# the request was https (CSRF's origin check, the redirect, secure cookies). Never set it without one.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# Origins whose unsafe requests (POST...) are accepted besides the Host's own, e.g. https://sim.example.org
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "exams",
    "simulations",
    "apikeys",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "yeeter.middleware.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "yeeter.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "yeeter.asgi.application"

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

DATABASES = {"default": env_database("DATABASE_URL", DATA_DIR / "yeeter.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Runs write events from several threads while the receivers read: WAL lets readers and the writer
    # proceed together, and writers wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "templates" / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# The simulator page: Django logins, and static files served by WhiteNoise in any mode (daphne,
# runserver, production); after `collectstatic` it serves STATIC_ROOT, before it the finders' files.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "whitenoise.middleware.WhiteNoiseMiddleware")
STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "simulator:catalog"
LOGOUT_REDIRECT_URL = "login"

# Channels: in-memory layer for the embedded default, Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: only used when a broker is configured; otherwise runs execute in-process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a worker process killed mid-patient: its task goes back to the queue
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task a worker took but never acknowledged (the whole worker was killed) is delivered again after this many
# seconds (the Redis transport's visibility timeout); a story silent for YEETER_RUN_STALE_SECONDS is redone.
_VISIBILITY_TIMEOUT = env_int("YEETER_CELERY_VISIBILITY_TIMEOUT", 300, minimum=5, maximum=7 * 86400)
# Workers look for such tasks every few seconds (kombu's default is every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _VISIBILITY_TIMEOUT,
                                   "unacked_restore_interval": min(10, _VISIBILITY_TIMEOUT),
                                   "unacked_restore_throttle": 1}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The queue runs send their patients to and workers take them from (`celery -A yeeter worker -Q <name>`).
CELERY_TASK_DEFAULT_QUEUE = env_str("YEETER_CELERY_QUEUE", "yeeter")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "yeeter.api.AutoSchema",
    # API keys first: an unauthenticated request gets its WWW-Authenticate challenge (a 401, not a 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apikeys.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apikeys.permissions.IsApiClient"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["yeeter.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "yeeter.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Yeeter simulator API",
    "DESCRIPTION": (
        "Radiology workflow simulator: exam catalog, scenarios, endpoints and runs.\n\n"
        "Authenticate with an API key (`manage.py create_api_key NAME`) as `X-API-Key: KEY` or "
        "`Authorization: ApiKey KEY`, or with a logged-in session. Keys read and run; changing scenarios and "
        "endpoints needs a staff session.\n\n"
        "Every error has one body shape: `{\"error\": {\"code\": \"...\", \"message\": \"...\", "
        "\"details\": ...}}`. `code` is a stable machine-readable string (`invalid`, `unknown_parameter`, "
        "`invalid_filter`, `exam_not_found`, `no_matching_exam`, `invalid_scenario`, `not_found`, "
        "`not_authenticated`, `authentication_failed`, `permission_denied`, `parse_error`, "
        "`method_not_allowed`, `throttled`...), `message` a sentence for people, and `details` the "
        "per-field messages (`{\"field\": [\"message\"]}`) or other structured context, or null."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# Simulator identity on the wire (MSH-3/4, calling AE title) and the built-in receivers.
YEETER = {
    "HL7_SENDING_APPLICATION": env_str("YEETER_HL7_APP", "YEETER"),
    "HL7_SENDING_FACILITY": env_str("YEETER_HL7_FACILITY", "YEETER_HOSP"),
    "AE_TITLE": env_str("YEETER_AE_TITLE", "YEETER"),
    "BIND_ADDRESS": env_str("YEETER_BIND_ADDRESS", "127.0.0.1"),
    "PIXEL_WORKERS": env_int("YEETER_PIXEL_WORKERS", 2, minimum=1, maximum=64),
    # How far below the run's own CPU priority the pixel processes run (nice(2) steps): the network
    # exchanges whose latency bounds a run's throughput get the CPU first; 0 keeps one priority.
    "PIXEL_NICE": env_int("YEETER_PIXEL_NICE", 10, minimum=0, maximum=19),
    # Disk cache of the deterministic anatomy arrays, shared by the pixel processes and later runs
    # (generators.dicom.anatomy_cache); size 0 switches it off.
    "ANATOMY_CACHE_DIR": env_path("YEETER_ANATOMY_CACHE_DIR", DATA_DIR / "anatomy-cache"),
    "ANATOMY_CACHE_MB": env_int("YEETER_ANATOMY_CACHE_MB", 2048, minimum=0, maximum=1_048_576),
    # A running run writes Run.heartbeat_at this often; one silent for RUN_STALE_SECONDS is abandoned.
    "HEARTBEAT_SECONDS": env_int("YEETER_HEARTBEAT_SECONDS", 10, minimum=1, maximum=3600),
    "RUN_STALE_SECONDS": env_int("YEETER_RUN_STALE_SECONDS", 120, minimum=5, maximum=7 * 86400),
    # Finished runs older than this many days are deleted (rows and files) at start-up; 0 keeps them.
    "RUN_RETENTION_DAYS": env_int("YEETER_RUN_RETENTION_DAYS", 0, minimum=0, maximum=36500),
}

# -- limits: what one API request may ask of this machine (README "Limits") --------------------------
# A run's patients, the runs in flight (pending or running) per owner and on the whole server, and the
# instances per series are checked by simulations.services.run_start for every API/page start; a
# request over them is a 400 (size) or 429 (in flight) naming the limit and the variable that sets it.
LIMITS = {
    "PATIENTS_PER_RUN": env_int("YEETER_MAX_PATIENTS_PER_RUN", 1000, minimum=1, maximum=100_000),
    "RUNS_IN_FLIGHT_PER_OWNER": env_int("YEETER_MAX_RUNS_PER_OWNER", 4, minimum=1, maximum=1000),
    "RUNS_IN_FLIGHT": env_int("YEETER_MAX_RUNS", 8, minimum=1, maximum=1000),
    "INSTANCES_PER_SERIES": env_int("YEETER_MAX_INSTANCES_PER_SERIES", 500, minimum=1, maximum=5000),
    "JSON_DEPTH": env_int("YEETER_MAX_JSON_DEPTH", 32, minimum=4, maximum=500),
}
# Request bodies (JSON) over this many bytes are a 413 in the API's error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("YEETER_MAX_BODY_BYTES", 1_048_576, minimum=1024, maximum=1_073_741_824)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Every line goes through the scrubber: an API key sent in a URL never reaches the log.
    "filters": {"scrub_keys": {"()": "yeeter.logfilters.ScrubQueryKeys"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["scrub_keys"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {"pynetdicom": {"level": env_str("PYNETDICOM_LOG_LEVEL", "WARNING")}},
}

# --- Built-in receivers: limits against silent, greedy or careless peers (issue 13) -------------
# Used by the receivers that `runsim` and `manage.py serve` start (simulations.receivers); the README's
# "Receivers: limits" section lists them. Timeouts in seconds, sizes in bytes.
STORE_DUPLICATE_POLICIES = ("keep-first", "keep-last", "reject")
RECEIVERS = {
    # DICOM (Storage, MWL, MPPS SCPs), PS3.8 §9.1.5: a connection that sends no A-ASSOCIATE-RQ is
    # closed after ARTIM_TIMEOUT; an association silent for IDLE_TIMEOUT is aborted.
    "ARTIM_TIMEOUT": env_int("YEETER_DICOM_ARTIM_TIMEOUT", 10, minimum=1, maximum=600),
    "IDLE_TIMEOUT": env_int("YEETER_DICOM_IDLE_TIMEOUT", 60, minimum=1, maximum=86400),
    "MAX_ASSOCIATIONS": env_int("YEETER_DICOM_MAX_ASSOCIATIONS", 64, minimum=1, maximum=4096),
    "MAX_PER_PEER": env_int("YEETER_DICOM_MAX_PER_PEER", 32, minimum=1, maximum=4096),
    # A SOP Instance UID received again: keep-first (what PACS do by default), keep-last, or reject.
    "STORE_DUPLICATES": env_str("YEETER_STORE_DUPLICATES", "keep-first").strip().lower(),
    # fsync every received file before it is moved into place and answered.
    "STORE_FSYNC": env_bool("YEETER_STORE_FSYNC", True),
    # HL7 MLLP listener: one message at most MLLP_MAX_MESSAGE_BYTES, the partial messages of all
    # connections together at most MLLP_BUFFER_BUDGET; accepted MSH-12 versions and MSH-9 message
    # types (empty: HL7 tables 0104 and 0076).
    "MLLP_MAX_MESSAGE_BYTES": env_int("YEETER_MLLP_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, minimum=1024,
                                      maximum=1024 * 1024 * 1024),
    "MLLP_BUFFER_BUDGET": env_int("YEETER_MLLP_BUFFER_BUDGET", 64 * 1024 * 1024, minimum=1024,
                                  maximum=16 * 1024 * 1024 * 1024),
    "MLLP_IDLE_TIMEOUT": env_int("YEETER_MLLP_IDLE_TIMEOUT", 300, minimum=1, maximum=86400),
    "MLLP_VERSIONS": env_list("YEETER_MLLP_VERSIONS", []),
    "MLLP_MESSAGE_TYPES": [kind.upper() for kind in env_list("YEETER_MLLP_MESSAGE_TYPES", [])],
}
if RECEIVERS["STORE_DUPLICATES"] not in STORE_DUPLICATE_POLICIES:
    raise ImproperlyConfigured(
        f"YEETER_STORE_DUPLICATES must be one of {', '.join(STORE_DUPLICATE_POLICIES)}, "
        f"got {RECEIVERS['STORE_DUPLICATES']!r}."
    )
if RECEIVERS["MLLP_BUFFER_BUDGET"] < RECEIVERS["MLLP_MAX_MESSAGE_BYTES"]:
    raise ImproperlyConfigured(
        f"YEETER_MLLP_BUFFER_BUDGET ({RECEIVERS['MLLP_BUFFER_BUDGET']}) must be at least "
        f"YEETER_MLLP_MAX_MESSAGE_BYTES ({RECEIVERS['MLLP_MAX_MESSAGE_BYTES']}): a message of the largest "
        "size would always be refused."
    )
