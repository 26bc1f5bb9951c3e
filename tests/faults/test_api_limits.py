"""Quotas of the runs API: patients per run, instances per series, runs in flight per owner and in total.

Over a size limit is a 400, over an in-flight limit a 429; both in the one error shape, naming the limit
and the environment variable that sets it (README "Limits").
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from simulations.models import Run, Scenario
from tests.api.conftest import api_key, client_with_key, staff_client  # noqa: F401 - fixtures
from tests.api.test_runs_api import HL7_STEPS, RUNS, error_of


@pytest.fixture
def scenario(catalog) -> Scenario:
    return Scenario.objects.create(name="HL7 only", steps=HL7_STEPS)


def key_client(name: str) -> APIClient:
    from apikeys.services import api_key_create

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name=name)[1])
    return client


def test_it_refuses_a_100000_patient_run_with_the_default_limit(scenario: Scenario,
                                                                 client_with_key: APIClient) -> None:
    response = client_with_key.post(RUNS, {"scenario": scenario.name, "patients": 100_000}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "limit_exceeded"
    assert error["details"] == {"limit": "patients_per_run", "value": 1000, "setting": "YEETER_MAX_PATIENTS_PER_RUN"}
    assert "the limit is 1000 patients per run (YEETER_MAX_PATIENTS_PER_RUN)" in error["message"]
    assert not Run.objects.exists()


def test_the_patient_limit_follows_the_setting(scenario: Scenario, client_with_key: APIClient, settings) -> None:
    settings.LIMITS = {**settings.LIMITS, "PATIENTS_PER_RUN": 3}
    assert client_with_key.post(RUNS, {"scenario": scenario.name, "patients": 3}, format="json").status_code == 202
    response = client_with_key.post(RUNS, {"scenario": scenario.name, "patients": 4}, format="json")
    assert response.status_code == 400 and error_of(response)["details"]["value"] == 3


def test_a_scenario_default_over_the_limit_is_refused_too(catalog, client_with_key: APIClient) -> None:
    Scenario.objects.create(name="huge", steps=HL7_STEPS, default_patients=5000)
    response = client_with_key.post(RUNS, {"scenario": "huge"}, format="json")
    assert response.status_code == 400 and error_of(response)["details"]["limit"] == "patients_per_run"


def test_instances_per_series_are_capped_and_over_the_cap_refused(scenario: Scenario, client_with_key: APIClient,
                                                                   settings) -> None:
    settings.LIMITS = {**settings.LIMITS, "INSTANCES_PER_SERIES": 20}
    response = client_with_key.post(RUNS, {"scenario": scenario.name, "max_instances_per_series": 21}, format="json")
    assert response.status_code == 400
    assert error_of(response)["details"] == {"limit": "instances_per_series", "value": 20,
                                             "setting": "YEETER_MAX_INSTANCES_PER_SERIES"}
    capped = client_with_key.post(RUNS, {"scenario": scenario.name}, format="json").json()
    assert Run.objects.get(pk=capped["id"]).options["max_instances_per_series"] == 20


def test_runs_in_flight_per_owner_are_limited_with_a_429(scenario: Scenario, settings) -> None:
    settings.LIMITS = {**settings.LIMITS, "RUNS_IN_FLIGHT_PER_OWNER": 2}
    alice, bob = key_client("alice"), key_client("bob")
    first = [alice.post(RUNS, {"scenario": scenario.name}, format="json") for _ in range(2)]
    assert [r.status_code for r in first] == [202, 202]
    response = alice.post(RUNS, {"scenario": scenario.name}, format="json")
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "limit_exceeded" and error["details"] == {
        "limit": "runs_in_flight_per_owner", "value": 2, "setting": "YEETER_MAX_RUNS_PER_OWNER"}
    assert "too many runs in flight" in error["message"]
    assert bob.post(RUNS, {"scenario": scenario.name}, format="json").status_code == 202  # another owner
    # A run that ended frees its place.
    Run.objects.filter(pk=first[0].json()["id"]).update(status=Run.Status.CANCELLED)
    assert alice.post(RUNS, {"scenario": scenario.name}, format="json").status_code == 202
    assert Run.objects.filter(api_key__name="alice").count() == 3


def test_runs_in_flight_on_the_server_are_limited_whoever_asks(scenario: Scenario, staff_client: APIClient,
                                                                settings) -> None:
    settings.LIMITS = {**settings.LIMITS, "RUNS_IN_FLIGHT": 3}
    Run.objects.create(steps=HL7_STEPS, patient_count=1, seed=1, status=Run.Status.RUNNING)  # a runsim run
    for name in ("a", "b"):
        assert key_client(name).post(RUNS, {"scenario": scenario.name}, format="json").status_code == 202
    response = staff_client.post(RUNS, {"scenario": scenario.name}, format="json")
    assert response.status_code == 429
    assert error_of(response)["details"] == {"limit": "runs_in_flight", "value": 3, "setting": "YEETER_MAX_RUNS"}


def test_the_limits_are_read_from_the_environment_and_bad_values_stop_start_up(tmp_path) -> None:
    import subprocess
    import sys

    from django.conf import settings

    base = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "x" * 50, "YEETER_DATA_DIR": str(tmp_path)}
    code = "from django.conf import settings; print(settings.LIMITS['PATIENTS_PER_RUN'], " \
           "settings.LIMITS['RUNS_IN_FLIGHT_PER_OWNER'], settings.DATA_UPLOAD_MAX_MEMORY_SIZE)"
    run = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], capture_output=True,
                         text=True, cwd=settings.BASE_DIR, timeout=60,
                         env={**base, "DJANGO_SETTINGS_MODULE": "yeeter.settings", "YEETER_MAX_PATIENTS_PER_RUN": "7",
                              "YEETER_MAX_RUNS_PER_OWNER": "2", "YEETER_MAX_BODY_BYTES": "4096"})
    assert run.stdout.split() == ["7", "2", "4096"], run.stderr
    bad = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True,
                         cwd=settings.BASE_DIR, timeout=60, env={**base, "YEETER_MAX_RUNS": "0"})
    assert bad.returncode != 0 and "YEETER_MAX_RUNS must be at least 1, got 0." in bad.stderr


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_cannot_pass_the_in_flight_limit_together(catalog_tx, settings) -> None:
    """Eight starts at once for one key with room for two: exactly two runs exist afterwards. The count
    and the insert are one serialised step (SQLite's IMMEDIATE transaction, PostgreSQL's advisory lock)."""
    import threading

    from django.db import connection

    from apikeys.authentication import ApiKeyClient
    from apikeys.services import api_key_create
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import LimitExceeded, run_create

    settings.LIMITS = {**settings.LIMITS, "RUNS_IN_FLIGHT_PER_OWNER": 2}
    principal = ApiKeyClient(api_key_create(name="racer")[0])
    barrier, outcomes = threading.Barrier(8), []

    def start() -> None:
        try:
            barrier.wait(10)
            run_create(steps_json=HL7_STEPS, patients=1, concurrency=1, endpoints=EndpointSet(),
                       options=RunOptions(send=False), principal=principal, enforce_limits=True)
            outcomes.append("created")
        except LimitExceeded as exc:
            outcomes.append(exc.limit)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["created"] * 2 + ["runs_in_flight_per_owner"] * 6, outcomes
    assert Run.objects.filter(api_key=principal.key).count() == 2
