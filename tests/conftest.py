"""Shared fixtures: free loopback ports and skip markers for external real peers."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (pynetdicom tests/utils.py::get_port habit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


# What makes a process part of this test session's backend; a process with its own data dir drops them.
BACKEND_VARIABLES = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "YEETER_CELERY_QUEUE")


def own_process_env(**values: str) -> dict[str, str]:
    """The environment of a Yeeter process a test starts on a data dir of its own: this one's, less the
    session's backend (so it is the embedded default on both test passes), plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
    env.update(values)
    return env


def missing_peer(reason: str):
    """A real peer this test needs is absent: skip on a developer's machine, fail under ``CI=true``.

    CI installs every peer (.ci/run); a skip there would hide a broken install step.
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — under CI=true a missing peer is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Path of ``name`` on PATH, or skip the test naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        package = {"dciodvfy": "dicom3tools", "dcentvfy": "dicom3tools", "chromium": "chromium",
                   "Orthanc": "orthanc"}.get(name, "dcmtk")
        missing_peer(f"{name} is not installed (Debian package {package}; .ci/run installs it)")
    return path


@pytest.fixture
def catalog(db):
    """The small test catalog of tests/exams/documents.py loaded into the test database."""
    from exams.catalog_io import load_catalog
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    return small_catalog()


@pytest.fixture
def catalog_tx(transactional_db):
    """The small test catalog and the shipped scenarios, committed (for tests with threads/processes)."""
    from exams.catalog_io import load_catalog
    from simulations.scenario_io import load_scenarios
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    load_scenarios()
    return small_catalog()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Test CA and server certificates (tests/pki.py), or a skip when the openssl CLI is missing."""
    from tests.pki import make_pki

    binary = shutil.which("openssl")
    if binary is None:
        missing_peer("the openssl CLI is not installed (Debian package openssl); it makes the test certificates")
    return make_pki(binary, tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session", autouse=True)
def scaleout_workers(request, tmp_path_factory):
    """The scale-out backend (``CELERY_BROKER_URL`` set, as scripts/test's second pass sets it with PostgreSQL
    and Redis): real ``celery -A yeeter worker`` subprocesses on this session's test database and its own
    queue execute the patients of every run the tests start. Nothing on the embedded default."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL:
        yield None
        return
    import uuid

    from tests.celery_workers import Workers, worker_env

    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    queue = f"yeeter-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:6]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue  # where this session's runs send their patients
    os.environ["YEETER_CELERY_QUEUE"] = queue  # and those of the processes the tests start (runsim, daphne)
    with blocker.unblock():
        env = worker_env(broker=settings.CELERY_BROKER_URL, queue=queue,
                         extra={"REDIS_URL": os.environ.get("REDIS_URL", ""), "YEETER_PIXEL_WORKERS": "1"})
    workers = Workers(broker=settings.CELERY_BROKER_URL, queue=queue, log_dir=tmp_path_factory.mktemp("celery"),
                      env=env).start(int(os.environ.get("YEETER_TEST_WORKERS", "2")))
    yield workers
    workers.stop()
