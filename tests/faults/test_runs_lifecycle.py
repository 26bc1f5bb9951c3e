"""Runs under faults, in process: a scenario that cannot be planned, a run whose process is gone.

Each test here failed on the code before issue 13: the first hung for good, the others found no
heartbeat, no reaper and a cancel that only set a flag nobody would read.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from simulations.models import Run, RunEvent, RunPatient, Scenario

pytestmark = pytest.mark.django_db(transaction=True)

NO_ORDER = [{"step_type": "REGISTER_PATIENT"}, {"step_type": "WAIT", "seconds": 0}]
ORDER = [{"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}, {"step_type": "SEND_HL7"}]


def _no_order_message(text: str) -> None:
    assert "no GENERATE_HL7 step" in text, text


def _staff() -> APIClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("lead", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- a scenario without an order ---------------------------------------------------------------

def test_the_api_refuses_steps_without_an_order_step(catalog_tx):
    response = _staff().post("/api/simulator/runs", {"steps": NO_ORDER, "patients": 1, "send": False}, format="json")
    assert response.status_code == 400, response.content
    _no_order_message(json.dumps(response.json()))
    assert not Run.objects.exists()


def test_load_scenarios_refuses_a_scenario_without_an_order_step(catalog_tx, tmp_path):
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps({"format": "yeeter-scenarios", "version": 1,
                                "scenarios": [{"name": "No order", "steps": NO_ORDER}]}))
    with pytest.raises(CommandError) as err:
        call_command("load_scenarios", str(path), stdout=io.StringIO())
    _no_order_message(str(err.value))
    assert "step" in str(err.value) and not Scenario.objects.filter(name="No order").exists()


def test_runsim_refuses_a_stored_scenario_without_an_order_step(catalog_tx, tmp_path):
    Scenario.objects.create(name="Old row", steps=NO_ORDER)  # written before validation existed
    with pytest.raises(CommandError) as err:
        call_command("runsim", "--scenario", "Old row", "--output", str(tmp_path / "run"), stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert err.value.returncode == 2
    _no_order_message(str(err.value))
    assert not Run.objects.exists()


def test_a_run_that_cannot_be_planned_ends_in_error_says_why_and_closes_its_receivers(catalog_tx, tmp_path):
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import missing_kinds, run_create, run_execute

    endpoints = EndpointSet()
    run = run_create(steps_json=ORDER, patients=2, concurrency=2, endpoints=endpoints,
                     options=RunOptions(output_dir=tmp_path / "run", builtin_kinds=missing_kinds(endpoints)))
    Run.objects.filter(pk=run.pk).update(steps=NO_ORDER)  # as a row from an older version would hold
    worker = threading.Thread(target=run_execute, args=(Run.objects.get(pk=run.pk),), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the run hung"
    run.refresh_from_db()
    assert run.status == Run.Status.ERROR and run.finished_at is not None
    assert "no GENERATE_HL7 step" in run.error
    event = RunEvent.objects.get(run=run, type="run.error")
    assert event.level == "error" and "no GENERATE_HL7 step" in event.message
    for kind in ("hl7", "storage", "mwl", "mpps"):
        port = run.endpoints["by_kind"][kind]["port"]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- a run whose process is gone ---------------------------------------------------------------

def _running(*, worker: str, beat_age_s: float, patients=("running", "pending", "passed")) -> Run:
    now = timezone.now()
    run = Run.objects.create(steps=ORDER, patient_count=len(patients), seed=1, status=Run.Status.RUNNING,
                             worker=worker, started_at=now - timedelta(seconds=beat_age_s),
                             heartbeat_at=now - timedelta(seconds=beat_age_s))
    RunPatient.objects.bulk_create(RunPatient(run=run, index=i, status=s) for i, s in enumerate(patients))
    return run


def test_reap_runs_abandons_runs_whose_process_is_gone_and_spares_the_living(db, settings):
    here = socket.gethostname()
    dead = _running(worker=f"{here}:{_dead_pid()}", beat_age_s=1)
    silent = _running(worker="other-host:4242", beat_age_s=3600)
    alive = _running(worker="other-host:4243", beat_age_s=1)
    out = io.StringIO()
    call_command("reap_runs", stdout=out)
    for run in (dead, silent):
        run.refresh_from_db()
        assert run.status == Run.Status.ABANDONED and run.finished_at is not None
        assert dict(run.patients.values_list("index", "status")) == {0: "failed", 1: "cancelled", 2: "passed"}
        event = RunEvent.objects.get(run=run, type="run.abandoned")
        assert event.level == "error" and run.worker in event.payload["worker"]
    assert "is no longer running" in RunEvent.objects.get(run=dead).message
    assert "no heartbeat from other-host:4242 for 3600 s" in RunEvent.objects.get(run=silent).message
    alive.refresh_from_db()
    assert alive.status == Run.Status.RUNNING and not alive.events.exists()
    assert out.getvalue().splitlines()[-1] == "2 run(s) abandoned."


def test_api_cancel_ends_a_run_whose_process_is_gone(db):
    orphan = _running(worker=f"{socket.gethostname()}:{_dead_pid()}", beat_age_s=1)
    response = _staff().post(f"/api/simulator/runs/{orphan.pk}/cancel")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "abandoned"
    orphan.refresh_from_db()
    assert orphan.status == Run.Status.ABANDONED and "cancelled" in orphan.error
    assert not orphan.patients.filter(status__in=["running", "pending"]).exists()


def test_a_run_cancelled_while_queued_ends_cancelled_when_a_worker_takes_it(catalog_tx, tmp_path):
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import run_cancel, run_create, run_execute

    run = run_create(steps_json=ORDER, patients=1, concurrency=1, endpoints=EndpointSet(),
                     options=RunOptions(output_dir=tmp_path / "run", send=False))
    run_cancel(run=run)
    run = run_execute(Run.objects.get(pk=run.pk))
    assert run.status == Run.Status.CANCELLED and run.finished_at is not None
    assert not (tmp_path / "run").exists()  # it never started


def test_a_running_run_records_its_worker_and_heartbeat(catalog_tx, tmp_path, settings):
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import run_create, run_execute

    settings.YEETER = {**settings.YEETER, "HEARTBEAT_SECONDS": 1}
    steps = [*ORDER[:1], {"step_type": "WAIT", "seconds": 3}]
    run = run_create(steps_json=steps, patients=1, concurrency=1, endpoints=EndpointSet(),
                     options=RunOptions(output_dir=tmp_path / "run", send=False))
    beats = []
    worker = threading.Thread(target=run_execute, args=(Run.objects.get(pk=run.pk),), daemon=True)
    worker.start()
    while worker.is_alive():
        beats.append(Run.objects.values_list("worker", "heartbeat_at").get(pk=run.pk))
        worker.join(timeout=0.3)
    import os

    assert {w for w, _ in beats if w} == {f"{socket.gethostname()}:{os.getpid()}"}
    assert len({b for _, b in beats if b}) >= 3  # the start, then about one a second


def test_the_next_runsim_start_abandons_a_run_whose_process_is_gone(catalog_tx, tmp_path):
    orphan = _running(worker=f"{socket.gethostname()}:{_dead_pid()}", beat_age_s=1)
    out = io.StringIO()
    call_command("runsim", "--exam", "DX-CHEST-2V", "--patients", "1", "--no-send", "--max-instances", "1", "--json",
                 "--output", str(tmp_path / "run"), stdout=out, stderr=io.StringIO())
    orphan.refresh_from_db()
    assert orphan.status == Run.Status.ABANDONED
    assert RunEvent.objects.filter(run=orphan, type="run.abandoned").exists()


def test_the_web_servers_first_request_abandons_a_run_whose_process_is_gone(db):
    from django.core.signals import request_started

    from simulations.apps import _housekeep_once

    orphan = _running(worker=f"{socket.gethostname()}:{_dead_pid()}", beat_age_s=1)
    client = _staff()
    request_started.connect(_housekeep_once, dispatch_uid="simulations.housekeep")  # as at process start
    client.get("/api/simulator/runs")
    orphan.refresh_from_db()
    assert orphan.status == Run.Status.ABANDONED
    second = _running(worker=f"{socket.gethostname()}:{_dead_pid()}", beat_age_s=1)
    client.get("/api/simulator/runs")
    second.refresh_from_db()
    assert second.status == Run.Status.RUNNING  # once per process, not a query per request


def test_reap_runs_abandons_a_pending_run_whose_dispatching_process_died_and_spares_queued_ones(db):
    """A run the web process handed to its own thread is pending until the thread starts it: if that
    process dies first, nobody else ever will. A run queued for Celery (no worker yet) is left alone."""
    here = socket.gethostname()
    held = Run.objects.create(steps=ORDER, patient_count=2, seed=1, worker=f"{here}:{_dead_pid()}")
    RunPatient.objects.bulk_create(RunPatient(run=held, index=i) for i in range(2))
    queued = Run.objects.create(steps=ORDER, patient_count=1, seed=1,
                                created_at=timezone.now() - timedelta(hours=2))
    living = Run.objects.create(steps=ORDER, patient_count=1, seed=1, worker=f"{here}:1")  # pid 1 lives
    call_command("reap_runs", stdout=io.StringIO())
    held.refresh_from_db()
    assert held.status == Run.Status.ABANDONED
    assert set(held.patients.values_list("status", flat=True)) == {"cancelled"}
    assert "is no longer running" in RunEvent.objects.get(run=held, type="run.abandoned").message
    for run in (queued, living):
        run.refresh_from_db()
        assert run.status == Run.Status.PENDING and not run.events.exists()


def test_a_dispatched_run_records_the_process_that_holds_it(catalog_tx, settings):
    from simulations.services import run_dispatch

    settings.CELERY_BROKER_URL = ""
    run = Run.objects.create(steps=ORDER, patient_count=1, seed=1, cancel_requested=True)
    run_dispatch(run_id=run.pk)
    run.refresh_from_db()
    assert run.worker == f"{socket.gethostname()}:{os.getpid()}"
    for thread in [t for t in threading.enumerate() if t.name == f"run-{run.pk}"]:
        thread.join(timeout=60)  # the run (cancelled before it began) ends before the database goes
    run.refresh_from_db()
    assert run.is_finished
