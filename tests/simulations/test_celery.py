"""Scale-out: with a broker configured, a started run is a Celery task that a worker executes."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import missing_peer

from simulations.models import Run, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.interop]


@pytest.fixture
def redis_broker(settings):
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        missing_peer("Redis is not listening on 127.0.0.1:6379")
    from yeeter.celery import app

    url = "redis://127.0.0.1:6379/13"
    settings.CELERY_BROKER_URL = url
    previous = (app.conf.broker_url, app.conf.result_backend)
    app.conf.broker_url, app.conf.result_backend = url, None
    yield app
    app.conf.broker_url, app.conf.result_backend = previous


def test_a_started_run_is_executed_by_a_celery_worker(redis_broker, catalog_tx):
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_success

    from simulations.services import run_start

    done: list[str] = []

    def record(sender, result, **kwargs) -> None:
        done.append(f"{sender.name}:{result}")

    task_success.connect(record)
    with start_worker(redis_broker, perform_ping_check=False, pool="solo", shutdown_timeout=30):
        run = run_start(scenario=Scenario.objects.get(name="Outpatient MR knee"), patients=2,
                        seed=9, send=False, max_instances_per_series=1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.is_finished:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let the worker report the task's success
    task_success.disconnect(record)
    assert run.status == Run.Status.SUCCEEDED, (run.status, run.error)
    assert done == ["simulations.run_simulation:succeeded"]  # the worker ran it, not a local thread
    assert run.summary["passed"] == 2
    assert run.events.filter(type="run.finished").exists()
