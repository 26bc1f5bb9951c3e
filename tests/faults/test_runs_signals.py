"""Real ``runsim`` processes killed with real signals: the run ends in a final state and no child
process (pixel workers, multiprocessing's resource tracker) outlives it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import own_process_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A data dir with the schema, the shipped catalog and scenarios, for manage.py subprocesses."""
    data = tmp_path_factory.mktemp("signals")
    env = own_process_env()
    env.update({"SECRET_KEY": "signals-test-" + "x" * 40, "YEETER_DATA_DIR": str(data),
                "YEETER_HEARTBEAT_SECONDS": "1", "PYTHONUNBUFFERED": "1"})
    for args in (("migrate", "-v", "0"), ("load_catalog", "-v", "0"), ("load_scenarios", "-v", "0")):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=180)
    return env


def _children(pid: int) -> dict[int, str]:
    """Every descendant of ``pid`` now, as {pid: its start time} (so a reused pid is not mistaken)."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)], starts[int(entry.name)] = int(fields[1]), fields[19]
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = starts[child]
                frontier.append(child)
    return found


def _survivors(children: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in children.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def _start(env: dict[str, str], tmp_path: Path, patients: int = 4) -> subprocess.Popen:
    # Patients arrive about one a second so the run is mid-flight, pixel workers up, when signalled.
    return subprocess.Popen(
        [sys.executable, "manage.py", "runsim", "--patients", str(patients), "--concurrency", "2", "--rate", "3600",
         "--seed", "2", "--max-instances", "2", "--output", str(tmp_path / "run")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_pixel_workers(proc: subprocess.Popen) -> dict[int, str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        children = _children(proc.pid)
        workers = [pid for pid in children
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()] if children else []
        if len(workers) >= 1:
            return children
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no pixel worker started: {proc.communicate()}")


def _db(env: dict[str, str]) -> sqlite3.Connection:
    return sqlite3.connect(Path(env["YEETER_DATA_DIR"]) / "yeeter.sqlite3", timeout=30)


def _run_id(proc_stdout: str) -> str:
    return uuid.UUID(re.search(r"^Run ([0-9a-f-]{36})", proc_stdout, re.M).group(1)).hex


def _run_row(env, run_id: str) -> tuple[str, str, str]:
    with _db(env) as db:
        return db.execute("SELECT status, worker, error FROM simulations_run WHERE id = ?", (run_id,)).fetchone()


def _patient_statuses(env, run_id: str) -> list[str]:
    with _db(env) as db:
        return [s for (s,) in db.execute("SELECT status FROM simulations_runpatient WHERE run_id = ? ORDER BY "
                                         "\"index\"", (run_id,))]


def test_kill_9_leaves_no_child_alive_and_the_next_start_abandons_the_run(env, tmp_path):
    proc = _start(env, tmp_path)
    children = _wait_for_pixel_workers(proc)
    with _db(env) as db:
        (run_id, worker, beat1), = db.execute("SELECT id, worker, heartbeat_at FROM simulations_run "
                                              "WHERE status = 'running'").fetchall()
    import socket

    assert worker == f"{socket.gethostname()}:{proc.pid}"
    time.sleep(2.5)
    with _db(env) as db:
        (beat2,), = db.execute("SELECT heartbeat_at FROM simulations_run WHERE id = ?", (run_id,)).fetchall()
    assert beat2 > beat1  # the heartbeat goes on while the run does

    children = {**children, **_children(proc.pid)}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 10
    while _survivors(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _survivors(children) == [], f"children of the killed runsim still alive: {_survivors(children)}"
    assert _run_row(env, run_id)[0] == "running"  # nobody has looked yet

    reaped = subprocess.run([sys.executable, "manage.py", "reap_runs"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert reaped.returncode == 0, reaped.stderr
    assert f"its process {worker} is no longer running" in reaped.stdout
    status, _, error = _run_row(env, run_id)
    assert status == "abandoned" and error.startswith("abandoned: its process")
    assert not {"running", "pending"} & set(_patient_statuses(env, run_id))


def test_ctrl_c_to_the_process_group_finishes_steps_in_flight_and_ends_the_run_cancelled(env, tmp_path):
    proc = _start(env, tmp_path, patients=6)
    children = _wait_for_pixel_workers(proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "Stopping: finishing steps in flight" in stderr
    assert "Run cancelled after Ctrl-C" in stderr
    assert "cancelled of 6" in stdout and "Run cancelled." in stdout  # the summary was printed
    run_id = _run_id(stdout)
    assert _run_row(env, run_id)[0] == "cancelled"
    statuses = _patient_statuses(env, run_id)
    assert "cancelled" in statuses and set(statuses) <= {"passed", "cancelled"}, statuses  # none cut short
    time.sleep(1)
    assert _survivors(children) == []


def test_a_second_ctrl_c_aborts_at_once_and_the_run_still_ends_cancelled(env, tmp_path):
    proc = _start(env, tmp_path, patients=6)
    children = _wait_for_pixel_workers(proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    children = {**children, **_children(proc.pid)}
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    run_id = _run_id(stdout)
    assert f"Aborted: run {uuid.UUID(run_id)} ended cancelled" in stderr
    status, _, error = _run_row(env, run_id)
    assert status == "cancelled" and "stopped at once" in error
    assert not {"running", "pending"} & set(_patient_statuses(env, run_id))
    deadline = time.monotonic() + 10
    while _survivors(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _survivors(children) == []


def test_sigterm_aborts_and_ends_the_run_cancelled_without_waiting_for_the_reaper(env, tmp_path):
    proc = _start(env, tmp_path)
    children = _wait_for_pixel_workers(proc)
    os.kill(proc.pid, signal.SIGTERM)  # docker stop, systemd: the parent only
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr, stderr
    run_id = _run_id(stdout)
    assert _run_row(env, run_id)[0] == "cancelled"
    assert not {"running", "pending"} & set(_patient_statuses(env, run_id))
    deadline = time.monotonic() + 10
    while _survivors(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _survivors(children) == []
