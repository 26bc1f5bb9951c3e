"""Ctrl-C during runsim stops cleanly: steps in flight finish, the rest is cancelled, files are kept."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import own_process_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def test_sigint_cancels_the_run_and_reports_it(tmp_path):
    env = own_process_env(DJANGO_SETTINGS_MODULE="tests.settings", YEETER_DATA_DIR=str(tmp_path))
    for args in (("migrate", "-v", "0"), ("load_catalog", "-v", "0"), ("load_scenarios", "-v", "0")):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=120)
    # 20 patients arriving about one per second: the run is still going when we interrupt it
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runsim", "--patients", "20", "--rate", "3600", "--seed", "2",
         "--max-instances", "1", "--output", str(tmp_path / "run")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    patients = tmp_path / "run" / "patients"
    while not (patients.exists() and any(patients.iterdir())):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr  # 128 + SIGINT, after the summary
    assert "Stopping: finishing steps in flight" in stderr
    assert "Run cancelled" in stdout and "cancelled of 20" in stdout
    assert "Traceback" not in stderr
    assert any(patients.iterdir())  # what was made is kept
