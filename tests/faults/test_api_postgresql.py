"""The hostile-input, quota and schemathesis suites of the API again, on PostgreSQL.

PostgreSQL is where NUL characters used to be 500s (it refuses U+0000 in text), and where the quota
check takes its advisory lock. The suites run in a pytest subprocess whose settings read
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/…`` (pytest-django creates and drops its test database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from tests.conftest import missing_peer

SUITES = ["tests/faults/test_api_input.py", "tests/faults/test_api_limits.py", "tests/api/test_schema.py",
          "tests/api/test_run_access.py"]


@pytest.mark.interop
def test_the_api_fault_and_schemathesis_suites_pass_on_postgresql(tmp_path) -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing_peer(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})")
    name = f"yeeter_api_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
           "YEETER_DATA_DIR": str(tmp_path)}
    vendor = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.db import connection; "
                             "print(connection.vendor)"], cwd=settings.BASE_DIR, capture_output=True, text=True,
                            env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"}, timeout=120)
    assert vendor.stdout.strip() == "postgresql", vendor.stderr
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:logging", *SUITES],
                            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
