"""Small typed readers for settings taken from the environment (healthchecks' habit).

Each raises ``ImproperlyConfigured`` with a sentence naming the variable and what was wrong, so
a typo in deployment fails at start-up instead of deep inside a run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ImproperlyConfigured(f"{name} must be an absolute path, got {raw!r}.")
    return path


def env_database(name: str, default_sqlite: Path) -> dict:
    """Parse ``DATABASE_URL`` (sqlite:///path, postgres://user@host:port/db) into a DATABASES entry."""
    import dj_database_url

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    try:
        config = dj_database_url.parse(raw.strip(), conn_max_age=60)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL Django can use ({exc}): {raw!r}.") from None
    engine = config.get("ENGINE", "")
    if engine not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:// or postgres:// URL (Yeeter supports SQLite and PostgreSQL), got {raw!r}."
        )
    if engine == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
    return config


_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER`` from ``"X-Forwarded-Proto: https"`` (or just the header name, value
    ``https``): the header a TLS-terminating proxy sets, as Django's ``("HTTP_X_FORWARDED_PROTO", "https")``.
    Unset: None (no proxy is trusted). Only set it behind a proxy that overwrites the header."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = raw.partition(":")
    header, value = header.strip(), value.strip() or "https"
    if not _HEADER_NAME.fullmatch(header) or not value.isprintable() or " " in value:
        raise ImproperlyConfigured(f"{name} must be a header and its value, like 'X-Forwarded-Proto: https', "
                                   f"got {raw!r}.")
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_origins(name: str) -> list[str]:
    """A comma-separated list of origins (``https://sim.example.org``), as ``CSRF_TRUSTED_ORIGINS`` needs."""
    origins = env_list(name, [])
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in {"http", "https"} or not sep or not rest or "/" in rest:
            raise ImproperlyConfigured(f"{name} must list origins like https://sim.example.org (scheme and host, "
                                       f"no path), got {origin!r}.")
    return origins
