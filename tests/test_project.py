"""The project itself: pinned versions, settings from the environment, PostgreSQL as well as SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import missing_peer, own_process_env
from django.core.exceptions import ImproperlyConfigured

from yeeter import env

ROOT = Path(__file__).resolve().parent.parent


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            package, version = line.split("==")
            pins[package.split("[")[0].lower()] = version
    return pins


def test_it_runs_the_pinned_django_and_libraries():
    from importlib.metadata import version

    pins = _pins("requirements.txt") | _pins("requirements-dev.txt")
    for package in ("django", "djangorestframework", "channels", "drf-spectacular", "pytest-django", "pydicom",
                    "pynetdicom", "hl7apy"):
        assert version(package) == pins[package], package
    assert pins["django"].startswith("6.0.")


def test_env_helpers_parse_and_reject_with_a_sentence(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    assert env.env_bool("X_BOOL") is True
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL must be a boolean"):
        env.env_bool("X_BOOL")
    monkeypatch.setenv("X_INT", "abc")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be an integer, got 'abc'"):
        env.env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be at least 1"):
        env.env_int("X_INT", 1, minimum=1)
    monkeypatch.setenv("X_PATH", "relative/dir")
    with pytest.raises(ImproperlyConfigured, match="X_PATH must be an absolute path"):
        env.env_path("X_PATH", Path("/tmp"))
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]


def test_database_url_accepts_sqlite_and_postgres_and_rejects_others(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")["NAME"] == str(tmp_path / "x.sqlite3")
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/yeeter")
    config = env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")
    assert config["ENGINE"] == "django.db.backends.postgresql" and config["NAME"] == "yeeter"
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/db")
    with pytest.raises(ImproperlyConfigured, match="must be a sqlite:// or postgres:// URL"):
        env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")
    monkeypatch.setenv("DATABASE_URL", "nonsense://")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")


def _manage(*args: str, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in own_process_env().items() if k not in {"SECRET_KEY", "DEBUG"}}
    environ.update(env_vars)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)


def test_settings_refuse_to_start_without_a_secret_key_unless_debug(tmp_path):
    result = _manage("check", env_vars={"YEETER_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]
    ok = _manage("check", env_vars={"YEETER_DATA_DIR": str(tmp_path), "DEBUG": "1"})
    assert ok.returncode == 0, ok.stderr


@pytest.mark.interop
def test_postgresql_urls_work_for_migrate_and_catalog_load(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing_peer(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})")
    name = f"yeeter_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        from tests.exams.documents import small_catalog

        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps(small_catalog()))
        env_vars = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}", "SECRET_KEY": "x" * 50,
                    "YEETER_DATA_DIR": str(tmp_path)}
        migrate = _manage("migrate", "--noinput", "-v", "0", env_vars=env_vars)
        assert migrate.returncode == 0, migrate.stderr
        load = _manage("load_catalog", str(catalog), "--summary", env_vars=env_vars)
        assert load.returncode == 0, load.stderr
        active = sum(1 for exam in small_catalog()["exams"] if exam.get("active", True))
        assert f"{active} active exams" in load.stdout
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            series = sum(len(exam["series"]) for exam in small_catalog()["exams"])
            assert conn.execute("SELECT count(*) FROM exams_seriesprotocol").fetchone()[0] == series
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.interop
def test_a_run_works_scaled_out_on_postgresql_and_the_redis_channel_layer(tmp_path):
    """The scale-out configuration end to end: runsim with DATABASE_URL=postgres and REDIS_URL set."""
    psycopg = pytest.importorskip("psycopg")
    import socket

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing_peer(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        admin.close()
        missing_peer("Redis is not listening on 127.0.0.1:6379")
    name = f"yeeter_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env_vars = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}", "SECRET_KEY": "x" * 50,
                    "YEETER_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/14"}
        for args in (("migrate", "--noinput", "-v", "0"), ("load_catalog", "-v", "0"), ("load_scenarios", "-v", "0")):
            result = _manage(*args, env_vars=env_vars)
            assert result.returncode == 0, result.stderr
        run = _manage("runsim", "--patients", "3", "--concurrency", "3", "--seed", "4", "--max-instances", "1",
                      "--json", env_vars=env_vars)
        assert run.returncode == 0, run.stderr + run.stdout
        summary = json.loads(run.stdout)
        assert summary["passed"] == summary["verified"] == 3
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            events = conn.execute("SELECT count(*), max(seq) FROM simulations_runevent").fetchone()
            assert events[0] == events[1] > 20  # every event persisted, seq without gaps
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
