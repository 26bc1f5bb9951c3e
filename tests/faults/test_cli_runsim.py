"""runsim's command line under careless input, and its display on a terminal and through a pipe."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BACKEND_VARIABLES, own_process_env
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.models import Run

ROOT = Path(__file__).resolve().parents[2]


def _refused(*args: str) -> str:
    """runsim with ``args`` must stop with exit status 2 and one sentence, creating no run."""
    with pytest.raises(CommandError) as err:
        call_command("runsim", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert err.value.returncode == 2, err.value
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert not Run.objects.exists()
    return message


@pytest.mark.parametrize(("args", "expected"), [
    (("--speed", "nan"), "argument --speed: expected a finite number, got 'nan'"),
    (("--speed", "inf"), "argument --speed: expected a finite number, got 'inf'"),
    (("--rate=-inf",), "argument --rate: expected a finite number, got '-inf'"),
    (("--rate", "nan"), "argument --rate: expected a finite number, got 'nan'"),
    (("--speed", "0"), "--speed must be greater than 0."),
    (("--seed", "-1"), "--seed must be from 0 to 9223372036854775807, got -1."),
    (("--seed", str(2**63)), f"--seed must be from 0 to 9223372036854775807, got {2**63}."),
    (("--seed", str(2**64)), f"--seed must be from 0 to 9223372036854775807, got {2**64}."),
    (("--max-instances", "5001"), "--max-instances must be from 1 to 5000, got 5001."),
    (("--concurrency", "100000"), "--concurrency must be from 1 to 256, got 100000."),
    (("--calling-aet", ""), "--calling-aet must be 1 to 16 printable ASCII characters, got ''."),
    (("--calling-aet", "A" * 17), "--calling-aet must be 1 to 16 printable ASCII characters"),
    (("--pacs", ""), "Bad endpoint: expected AET@HOST:PORT, got ''."),
    (("--hl7", ""), "Bad endpoint: expected HOST:PORT with a port from 1 to 65535, got ''."),
    (("--worklist", ""), "Bad endpoint: expected AET@HOST:PORT, got ''."),
    (("--mpps", ""), "Bad endpoint: expected AET@HOST:PORT, got ''."),
    (("--pacs", "", "--no-send"), "Bad endpoint: expected AET@HOST:PORT, got ''."),
])
def test_it_refuses_each_bad_flag_in_one_sentence(catalog_tx, args, expected):
    assert expected in _refused(*args, "--patients", "1")


def test_it_refuses_an_output_that_is_a_file_or_cannot_be_written(catalog_tx, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _refused("--output", str(blocker)) == f"--output {blocker} is not a directory."
    assert _refused("--output", str(blocker / "run")) == f"--output {blocker / 'run'}: {blocker} is not a directory."
    # /proc refuses new files even to root, where a permission bit would not
    assert _refused("--output", "/proc/yeeter-run").startswith("--output /proc/yeeter-run cannot be written (")


def test_it_refuses_a_worklist_dir_that_is_missing_or_cannot_be_written(catalog_tx, tmp_path):
    assert _refused("--worklist-dir", str(tmp_path / "nope")) == f"--worklist-dir {tmp_path / 'nope'} does not exist."
    assert _refused("--worklist-dir", "/proc/sys").startswith("--worklist-dir /proc/sys cannot be written (")


def _env(data: Path) -> dict[str, str]:
    env = own_process_env()
    env.update({"SECRET_KEY": "cli-test-" + "x" * 40, "YEETER_DATA_DIR": str(data), "COLUMNS": "120"})
    return env


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, str]:
    env = _env(tmp_path_factory.mktemp("cli"))
    for args in (("migrate", "-v", "0"), ("load_catalog", "-v", "0"), ("load_scenarios", "-v", "0")):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=180)
    return env


@pytest.mark.parametrize("args", [("--speed", "nan"), ("--patients", "many"), ("--output", "/proc/x")])
def test_a_bad_flag_on_the_real_command_line_is_one_line_on_stderr_and_exit_2(loaded, args):
    result = subprocess.run([sys.executable, "manage.py", "runsim", *args], cwd=ROOT, env=loaded,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_pipe_gets_plain_lines_and_patients_numbered_from_1(loaded, tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "runsim", "--patients", "2", "--no-send", "--seed", "3",
                             "--max-instances", "1", "--output", str(tmp_path / "run")], cwd=ROOT, env=loaded,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    lines = result.stdout.splitlines()
    assert "[patient 1] Patient 1 passed" in lines and "[patient 2] Patient 2 passed" in lines
    assert not any("patient 0" in line.lower() for line in lines)
    table = [line.split() for line in lines if line[:1].isdigit() or line.startswith(" ")]
    assert [row[0] for row in table if row and row[0].isdigit() and len(row) > 5] == ["1", "2"]


def test_json_numbers_patients_from_1(loaded, tmp_path):
    import json

    result = subprocess.run([sys.executable, "manage.py", "runsim", "--patients", "2", "--no-send", "--seed", "3",
                             "--max-instances", "1", "--json", "--output", str(tmp_path / "run")], cwd=ROOT,
                            env=loaded, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [p["number"] for p in json.loads(result.stdout)["patient_rows"]] == [1, 2]


def test_a_terminal_sees_the_bar_redrawn_in_place_not_a_line_per_event(loaded, tmp_path):
    """A real terminal (tmux, 120x40): an 8-patient run leaves its header, one bar line and the summary."""
    tmux = shutil.which("tmux")
    if tmux is None:
        from tests.conftest import missing_peer

        missing_peer("tmux is not installed (Debian package tmux)")
    session = f"yeeter-{os.getpid()}"
    done = tmp_path / "exit-code"
    env_args = [f"{k}={v}" for k, v in loaded.items() if k in {"SECRET_KEY", "YEETER_DATA_DIR", "PATH", "HOME"}]
    unset = " ".join(f"-u {name}" for name in BACKEND_VARIABLES)  # the session's backend is not this run's
    command = (f"cd {ROOT} && env {unset} {' '.join(env_args)} {sys.executable} manage.py runsim --patients 8 --no-send "
               f"--seed 5 --max-instances 1 --output {tmp_path / 'run'}; echo $? > {done}; sleep 120")
    subprocess.run([tmux, "-L", session, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
                   check=True, timeout=30)
    try:
        deadline = time.monotonic() + 180
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        screen = subprocess.run([tmux, "-L", session, "capture-pane", "-p", "-J", "-S", "-200", "-t", session],
                                capture_output=True, text=True, timeout=30).stdout
    finally:
        subprocess.run([tmux, "-L", session, "kill-server"], timeout=30)
    assert done.read_text().strip() == "0", screen
    lines = [line for line in screen.splitlines() if line.strip()]
    bars = [line for line in lines if line.startswith("patients ")]
    assert len(bars) == 1 and "8/8" in bars[0], screen
    assert len(lines) < 30, screen  # header, bar, 8 patient rows, totals — not a line per redraw
    assert "Run succeeded." in lines[-1]
