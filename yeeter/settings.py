"""Yeeter settings: one module, everything read from the environment through ``yeeter.env``.

Embedded default (no variables set): SQLite under ``YEETER_DATA_DIR``, the in-memory channel
layer, runs executed in-process. Scale-out: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL``
(channels_redis) and ``CELERY_BROKER_URL`` (runs as Celery tasks).
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from yeeter.env import env_bool, env_database, env_int, env_list, env_path, env_str

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
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

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
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
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
    # A running run writes Run.heartbeat_at this often; one silent for RUN_STALE_SECONDS is abandoned.
    "HEARTBEAT_SECONDS": env_int("YEETER_HEARTBEAT_SECONDS", 10, minimum=1, maximum=3600),
    "RUN_STALE_SECONDS": env_int("YEETER_RUN_STALE_SECONDS", 120, minimum=5, maximum=7 * 86400),
    # Finished runs older than this many days are deleted (rows and files) at start-up; 0 keeps them.
    "RUN_RETENTION_DAYS": env_int("YEETER_RUN_RETENTION_DAYS", 0, minimum=0, maximum=36500),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {"pynetdicom": {"level": env_str("PYNETDICOM_LOG_LEVEL", "WARNING")}},
}
