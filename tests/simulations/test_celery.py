"""Scale-out: with a broker configured, every patient of a run is one Celery task, executed by real
``celery -A yeeter worker`` subprocesses; a worker SIGKILLed mid-patient loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from simulations.models import Run, RunPatient
from tests.celery_workers import ROOT, Workers, redis_url, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.interop, pytest.mark.slow]

EXAM = "MR-KNEE-RIGHT-WO"


@pytest.fixture
def broker(settings):
    """This test's broker and queue, for the test process (which dispatches) and its workers."""
    from yeeter.celery import app

    # The scale-out pass's broker when there is one (the process's Celery app already talks to it).
    url, queue = settings.CELERY_BROKER_URL or redis_url(13), f"yeeter-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_DEFAULT_QUEUE = url, queue
    previous = app.conf.broker_url
    app.conf.broker_url = url
    yield url, queue
    app.conf.broker_url = previous


@pytest.fixture
def workers(broker, tmp_path, catalog_tx):
    url, queue = broker
    # Short timeouts so that a lost worker's patient is taken up within seconds, not minutes.
    env = worker_env(broker=url, queue=queue, extra={"YEETER_CELERY_VISIBILITY_TIMEOUT": "6",
                                                     "YEETER_RUN_STALE_SECONDS": "5", "YEETER_HEARTBEAT_SECONDS": "1"})
    pool = Workers(broker=url, queue=queue, log_dir=tmp_path, env=env)
    yield pool
    pool.stop()


def _succeeded(worker_log: str) -> int:
    return sum(1 for line in worker_log.splitlines() if "simulations.run_patient[" in line and " succeeded in " in line)


def test_runsim_with_two_workers_has_every_patient_executed_by_a_worker_and_verified(workers, broker, tmp_path):
    workers.start(2)
    url, queue = broker
    env = {**workers.env, "YEETER_PIXEL_WORKERS": "1"}
    result = subprocess.run([sys.executable, "manage.py", "runsim", "--exam", EXAM, "--patients", "6",
                             "--concurrency", "4", "--max-instances", "2", "--seed", "11", "--json"],
                            cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"}, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + workers.logs()
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["executor"] == "celery"
    assert summary["passed"] == 6 and summary["verified"] == 6 and summary["instances_stored"] > 0
    executed_by = Counter(int(row["worker"].rsplit(":", 1)[1]) for row in summary["patient_rows"])
    assert set(executed_by) <= workers.pids() and sum(executed_by.values()) == 6
    assert all(row["verified"] for row in summary["patient_rows"])
    # Their logs show one task per patient, whichever worker took it.
    assert sum(_succeeded(w.text()) for w in workers.workers) == 6, workers.logs()
    run = Run.objects.get(pk=summary["run_id"])
    seqs = list(run.events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))  # one numbering across the processes, no gap, no repeat
    assert run.events.filter(type="run.finished").count() == 1


def test_a_worker_killed_mid_patient_has_its_patient_redone_by_another_and_the_run_completes(workers, broker):
    from simulations.services import run_start

    first = workers.start(1).workers[0]
    steps = [{"step_type": t} for t in ("REGISTER_PATIENT", "GENERATE_HL7", "SEND_HL7", "SEND_DMWL",
                                        "MPPS_IN_PROGRESS", "GENERATE_DICOM", "SEND_DICOM", "STORAGE_COMMIT",
                                        "MPPS_COMPLETED", "SEND_REPORT")]
    steps[1].update(exam_id=EXAM)
    steps[4]["wait_after"] = 4  # the worker is mid-patient for a few seconds: time to kill it there
    run = run_start(scenario=None, steps_json=steps, patients=3, concurrency=1, seed=5, max_instances_per_series=1)
    deadline = time.monotonic() + 60
    victim = None
    while time.monotonic() < deadline and victim is None:
        victim = RunPatient.objects.filter(run=run, status=RunPatient.Status.RUNNING,
                                           worker__endswith=f":{first.pid}").first()
        if victim is None:
            time.sleep(0.05)
    assert victim is not None, workers.logs()
    os.kill(first.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    second = workers.add()  # the queue's other worker: the lost task reaches it once the broker gives it back
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished:
            break
        time.sleep(0.2)
    assert run.status == Run.Status.SUCCEEDED, (run.status, run.error, workers.logs())
    rows = {p.index: p for p in run.patients.all()}
    assert all(p.status == "passed" and p.verification.get("ok") for p in rows.values())
    redone = rows[victim.index]
    assert redone.attempts == 2 and redone.worker.endswith(f":{second.pid}")
    events = list(run.events.filter(patient=redone).values_list("type", flat=True))
    # Its story was told once, by the worker that finished it: no duplicate rows or events.
    assert events.count("patient.started") == 1 and events.count("patient.passed") == 1
    assert events[0] == "patient.retried"
    assert run.patients.count() == 3 and run.summary["passed"] == 3
    assert run.events.filter(type="run.finished").count() == 1


def test_without_a_worker_the_run_says_so_and_a_cancel_ends_its_queued_patients(broker, catalog_tx, settings,
                                                                                 monkeypatch):
    from simulations import distributed
    from simulations.services import run_cancel, run_start
    from tests.page.conftest import join_run_threads

    monkeypatch.setattr(distributed, "UNTAKEN_S", 1)
    settings.YEETER = {**settings.YEETER, "HEARTBEAT_SECONDS": 1}
    run = run_start(scenario=None, steps_json=[{"step_type": "GENERATE_HL7", "exam_id": EXAM}], patients=3,
                    concurrency=2, seed=3, send=False)  # this test's queue has no worker
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not run.events.filter(type="run.waiting").exists():
        time.sleep(0.2)
    warning = run.events.get(type="run.waiting")
    assert warning.level == "warning" and f"-Q {broker[1]}" in warning.message
    run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.summary["cancelled"] == 3
    assert set(run.patients.values_list("status", flat=True)) == {"cancelled"}
    assert run.events.filter(type="run.cancelled").count() == 1
    join_run_threads()  # the dispatching thread sees the end and stops
