"""Fixtures of the simulator page tests: users, a client logged in, one real small run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

PASSWORD = "page-test-password-1"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("reader", password=PASSWORD)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("engineer", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def execute_small_run(*, owner, exam_id: str = "MR-KNEE-RIGHT-WO", patients: int = 1,
                      generate_dicom: dict | None = None):
    """A real run on the built-in receivers (loopback), started as the page starts it (dispatched to a
    background thread on commit: use a transactional test) and waited for until it ends."""
    from simulations.apis import run_start_from_input
    from simulations.models import Run

    body = {"steps": [{"step_type": t} for t in ("REGISTER_PATIENT", "GENERATE_HL7", "SEND_HL7", "SEND_DMWL",
                                                  "MPPS_IN_PROGRESS", "GENERATE_DICOM", "SEND_DICOM",
                                                  "STORAGE_COMMIT", "MPPS_COMPLETED", "SEND_REPORT")],
            "patients": patients, "max_instances_per_series": 1, "seed": 7}
    body["steps"][1]["exam_id"] = exam_id
    body["steps"][5].update(generate_dicom or {})  # GENERATE_DICOM's fields (dose_sr, key_images, ...)
    run = run_start_from_input(body, principal=owner)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished and run.events.filter(type__in=["run.finished", "run.cancelled"]).exists():
            join_run_threads()
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run.pk} did not finish: {run.status}")


def join_run_threads(timeout: float = 60) -> None:
    """Wait for the background run threads of this process (``run-<id>``) to end: receivers stopped,
    database connection closed, before the test database goes away."""
    for thread in threading.enumerate():
        if thread.name.startswith("run-") and thread is not threading.current_thread():
            thread.join(timeout=timeout)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path
