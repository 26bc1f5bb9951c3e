"""Runs, scenarios and endpoints over the API: create → events → detail, cancel, validation, checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from simulations.models import Endpoint, Run, RunEvent, Scenario
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.mllp_server import MllpServer
from tests.conftest import free_port

RUNS = "/api/simulator/runs"
HL7_STEPS = [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"},
             {"step_type": "SEND_HL7"}]


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.fixture
def scenario(catalog) -> Scenario:
    return Scenario.objects.create(name="HL7 only", steps=HL7_STEPS, default_patients=2, concurrency=2)


# -- create → events → detail ----------------------------------------------------------------------

def poll_until_finished(client: APIClient, events_url: str, *, deadline_s: float = 60.0) -> list[dict]:
    """What a polling client does: ask for events after the last seq seen until the run has finished."""
    events: list[dict] = []
    after, stop = 0, time.monotonic() + deadline_s
    while time.monotonic() < stop:
        page = client.get(events_url, {"after": after}).json()
        events += page["events"]
        after = page["last_seq"]
        if page["finished"] and not page["events"]:
            return events
        time.sleep(0.05)
    raise AssertionError(f"the run did not finish within {deadline_s} s; events so far: {events[-3:]}")


@pytest.mark.django_db(transaction=True)  # the run executes in the background thread, as under runserver
def test_a_run_created_over_the_api_reports_its_events_and_patients(catalog, client_with_key: APIClient,
                                                                     django_assert_max_num_queries) -> None:
    Scenario.objects.create(name="HL7 only", steps=HL7_STEPS, default_patients=2, concurrency=2)
    response = client_with_key.post(RUNS, {"scenario": "HL7 only", "seed": 11}, format="json")
    assert response.status_code == 202, response.content
    created = response.json()
    run = Run.objects.get(pk=created["id"])
    assert created["status"] == "pending" and run.seed == 11 and run.patient_count == 2
    assert created["url"] == f"http://testserver{RUNS}/{run.pk}" == response["Location"]
    assert created["events_url"].endswith(f"/runs/{run.pk}/events")
    assert created["cancel_url"].endswith(f"/runs/{run.pk}/cancel")

    polled = poll_until_finished(client_with_key, created["events_url"])
    # The run's status is final before its thread has closed its event loop: let it end within the test.
    for thread in threading.enumerate():
        if thread.name == f"run-{run.pk}":
            thread.join(30)
    assert [e["seq"] for e in polled] == list(range(1, len(polled) + 1))
    assert len(polled) == RunEvent.objects.filter(run=run).count()

    with django_assert_max_num_queries(3):  # key lookup + run + events, whatever the event count
        first = client_with_key.get(created["events_url"], {"limit": 3}).json()
    assert [e["seq"] for e in first["events"]] == [1, 2, 3]
    assert first["last_seq"] == 3 and first["finished"] is True
    rest = client_with_key.get(created["events_url"], {"after": first["last_seq"]}).json()
    seqs = [e["seq"] for e in rest["events"]]
    assert seqs == sorted(seqs) and seqs[0] == 4
    assert len(seqs) == RunEvent.objects.filter(run=run).count() - 3
    assert {e["patient"] for e in first["events"] + rest["events"]} >= {1, 2}
    empty = client_with_key.get(created["events_url"], {"after": rest["last_seq"]}).json()
    assert empty["events"] == [] and empty["last_seq"] == rest["last_seq"]

    with django_assert_max_num_queries(3):  # key lookup + run + patient rows, whatever the patient count
        detail = client_with_key.get(created["url"]).json()
    assert detail["status"] == "succeeded", detail
    assert detail["scenario"] == "HL7 only" and detail["steps"] == HL7_STEPS
    assert [p["number"] for p in detail["patients"]] == [1, 2]
    assert detail["page_url"] == f"http://testserver/simulator/runs/{run.pk}/"
    assert detail["files_url"] == f"http://testserver/simulator/runs/{run.pk}/files/"
    assert detail["patients"][1]["page_url"] == f"http://testserver/simulator/runs/{run.pk}/patients/2/"
    assert detail["output_dir"] == run.output_dir and detail["owner"] == "apikey:tests"
    for row in detail["patients"]:
        assert row["exam_id"] == "MR-KNEE-RIGHT-WO" and row["modality"] == "MR" and row["cpt_code"] == "73721"
        assert row["status"] == "passed" and row["accession_number"]
        assert row["verification"]["ok"] is True

    response = client_with_key.post(created["cancel_url"])
    assert response.status_code == 409
    assert error_of(response)["code"] == "run_finished"


def test_it_starts_a_run_from_inline_steps(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.post(RUNS, {"steps": HL7_STEPS, "patients": 1, "concurrency": 1, "send": False,
                                           "max_instances_per_series": 1}, format="json")
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.scenario is None and run.steps == HL7_STEPS and run.patient_count == 1
    assert run.options["send"] is False and run.options["max_instances_per_series"] == 1


def test_it_cancels_a_pending_run(scenario: Scenario, client_with_key: APIClient) -> None:
    run_id = client_with_key.post(RUNS, {"scenario": scenario.name}, format="json").json()["id"]
    response = client_with_key.post(f"{RUNS}/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"id": run_id, "status": "pending", "cancel_requested": True}
    assert Run.objects.get(pk=run_id).cancel_requested is True


# -- validation -------------------------------------------------------------------------------------

def test_it_rejects_an_invalid_scenario_with_step_and_field_errors(catalog, client_with_key: APIClient) -> None:
    steps = [{"step_type": "GENERATE_DICOM"}, {"step_type": "GENERATE_HL7", "exam_id": "MR-NOPE"},
             {"step_type": "SEND_HL7", "endpoint": 5}]
    response = client_with_key.post(RUNS, {"steps": steps}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_scenario"
    problems = error["details"]["problems"]
    assert any(p.startswith("step 1 (GENERATE_DICOM)") for p in problems)
    assert any("step 3 (SEND_HL7)" in p and "endpoint" in p for p in problems)
    assert error["message"].startswith("The scenario is not valid: step ")
    assert not Run.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "non_field_errors"),
    ({"scenario": "HL7 only", "steps": HL7_STEPS}, "non_field_errors"),
    ({"scenario": "Nope"}, "scenario"),
    ({"scenario": "HL7 only", "patients": 0}, "patients"),
    ({"scenario": "HL7 only", "patients": 10**30}, "patients"),
    ({"scenario": "HL7 only", "concurrency": "many"}, "concurrency"),
    ({"scenario": "HL7 only", "seed": -5}, "seed"),
    ({"scenario": "HL7 only", "endpoints": ["pacs"]}, "endpoints"),
    ({"scenario": "HL7 only", "sped": 2}, "sped"),
    ({"scenario": "HL7 only", "speed": "2"}, "speed"),
    ({"scenario": "HL7 only", "speed": 0}, "speed"),
    ({"scenario": "HL7 only", "rate_per_hour": -1}, "rate_per_hour"),
    ({"scenario": "HL7 only", "arrival": "poisson"}, "rate_per_hour"),
    ({"scenario": "HL7 only", "arrival": "sometimes"}, "arrival"),
    ({"scenario": "HL7 only", "transfer_syntax": "jpeg2000"}, "transfer_syntax"),
    ({"steps": None}, "steps"),
    ({"steps": "string"}, "steps"),
    ({"steps": []}, "steps"),
])
def test_it_rejects_bad_run_requests_naming_the_field(scenario: Scenario, client_with_key: APIClient, body: dict,
                                                      field: str) -> None:
    response = client_with_key.post(RUNS, body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["details"]


def test_it_rejects_unknown_endpoint_ids(scenario: Scenario, client_with_key: APIClient) -> None:
    response = client_with_key.post(RUNS, {"scenario": scenario.name, "endpoints": [987654]}, format="json")
    assert response.status_code == 400
    assert "no endpoint with id 987654" in error_of(response)["details"]["problems"][0]


@pytest.mark.parametrize("run_id", ["not-a-uuid", "1d075e94-7287-42f8-bd3e-57571a1ffeac", "123"])
def test_it_answers_404_for_unknown_or_malformed_run_ids(db, client_with_key: APIClient, run_id: str) -> None:
    for url in (f"{RUNS}/{run_id}", f"{RUNS}/{run_id}/events"):
        response = client_with_key.get(url)
        assert response.status_code == 404
        assert "No run with id" in error_of(response)["message"]
    assert client_with_key.post(f"{RUNS}/{run_id}/cancel").status_code == 404


@pytest.mark.parametrize("query", [{"after": "-1"}, {"after": "x"}, {"limit": "501"}, {"since": "3"}])
def test_the_events_endpoint_validates_its_parameters(scenario: Scenario, client_with_key: APIClient,
                                                      query: dict) -> None:
    run_id = client_with_key.post(RUNS, {"scenario": scenario.name}, format="json").json()["id"]
    response = client_with_key.get(f"{RUNS}/{run_id}/events", query)
    assert response.status_code == 400
    assert list(error_of(response)["details"]) == list(query)


# -- list -----------------------------------------------------------------------------------------------

def test_it_lists_runs_paginated_and_filtered_by_status(scenario: Scenario, client_with_key: APIClient,
                                                        django_assert_max_num_queries) -> None:
    ids = [client_with_key.post(RUNS, {"scenario": scenario.name}, format="json").json()["id"] for _ in range(3)]
    Run.objects.filter(pk=ids[0]).update(status=Run.Status.SUCCEEDED)
    with django_assert_max_num_queries(3):  # key lookup + count + page
        page = client_with_key.get(RUNS, {"limit": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
    assert page["results"][0]["url"].startswith("http://testserver/api/simulator/runs/")
    done = client_with_key.get(RUNS, {"status": "succeeded"}).json()
    assert [r["id"] for r in done["results"]] == [ids[0]]
    response = client_with_key.get(RUNS, {"status": "finished"})
    assert response.status_code == 400 and "status" in error_of(response)["details"]
    assert client_with_key.get(RUNS, {"offset": str(2**70)}).status_code == 400


# -- scenarios and endpoints -------------------------------------------------------------------------

def test_it_lists_scenarios_with_a_fixed_number_of_queries(scenario: Scenario, client_with_key: APIClient,
                                                           django_assert_max_num_queries) -> None:
    endpoint = Endpoint.objects.create(name="ris", kind="hl7", host="127.0.0.1", port=2575)
    for n in range(5):
        Scenario.objects.create(name=f"extra {n}", steps=HL7_STEPS).endpoints.add(endpoint)
    client_with_key.get("/api/simulator/scenarios")
    with django_assert_max_num_queries(3):  # key lookup + scenarios + their endpoints
        body = client_with_key.get("/api/simulator/scenarios").json()
    assert [s["name"] for s in body][:2] == ["HL7 only", "extra 0"]
    assert body[1]["endpoints"] == [endpoint.pk]


def test_staff_creates_a_scenario_whose_steps_are_validated_first(catalog, staff_client: APIClient) -> None:
    bad = staff_client.post("/api/simulator/scenarios", {"name": "bad", "steps": [{"step_type": "FLY"}]},
                            format="json")
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_scenario"
    response = staff_client.post("/api/simulator/scenarios", {"name": "knee", "steps": HL7_STEPS,
                                                              "default_patients": 3}, format="json")
    assert response.status_code == 201, response.content
    assert Scenario.objects.get(name="knee").default_patients == 3
    duplicate = staff_client.post("/api/simulator/scenarios", {"name": "knee", "steps": HL7_STEPS}, format="json")
    assert duplicate.status_code == 400 and "name" in error_of(duplicate)["details"]


def test_staff_creates_endpoints_checked_by_the_model_rules(db, staff_client: APIClient) -> None:
    response = staff_client.post("/api/simulator/endpoints", {"name": "pacs", "kind": "storage", "host": "10.0.0.5",
                                                              "port": 104}, format="json")
    assert response.status_code == 400
    assert "ae_title" in error_of(response)["details"]
    response = staff_client.post("/api/simulator/endpoints", {"name": "pacs", "kind": "storage", "host": "10.0.0.5",
                                                              "port": 104, "ae_title": "PACS"}, format="json")
    assert response.status_code == 201
    assert response.json()["address"] == "PACS@10.0.0.5:104"


# -- endpoint check (real loopback peers) ---------------------------------------------------------------

@pytest.fixture
def storage_scp(tmp_path: Path) -> Iterator[StorageScp]:
    scp = StorageScp(storage_dir=tmp_path / "store")
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture
def mllp_listener() -> Iterator[int]:
    handle = MllpServer(idle_timeout=30.0).start_in_thread()
    yield handle.port
    handle.stop()


def check(client: APIClient, endpoint: Endpoint) -> dict:
    response = client.post(f"/api/simulator/endpoints/{endpoint.pk}/check")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_endpoint_check_echoes_a_dicom_peer(db, client_with_key: APIClient, storage_scp: StorageScp) -> None:
    endpoint = Endpoint.objects.create(name="pacs", kind="storage", host="127.0.0.1", port=storage_scp.port,
                                       ae_title=storage_scp.ae_title)
    result = check(client_with_key, endpoint)
    assert result["ok"] is True and result["method"] == "C-ECHO" and result["error"] is None
    assert 0 < result["latency_ms"] < 1000


def test_the_endpoint_check_does_an_mllp_round_trip(db, client_with_key: APIClient, mllp_listener: int) -> None:
    endpoint = Endpoint.objects.create(name="ris", kind="hl7", host="127.0.0.1", port=mllp_listener)
    result = check(client_with_key, endpoint)
    assert result["ok"] is True and result["method"] == "MLLP NMD^N02"
    assert 0 < result["latency_ms"] < 1000


def test_the_endpoint_check_reports_a_peer_that_does_not_answer(db, client_with_key: APIClient) -> None:
    endpoint = Endpoint.objects.create(name="gone", kind="mwl", host="127.0.0.1", port=free_port(),
                                       ae_title="MWL", timeout=3)
    result = check(client_with_key, endpoint)
    assert result["ok"] is False and result["latency_ms"] is None
    assert f"MWL@127.0.0.1:{endpoint.port}" in result["error"]


def test_the_endpoint_check_looks_at_a_worklist_folder(db, client_with_key: APIClient, tmp_path: Path) -> None:
    there = Endpoint.objects.create(name="wl", kind="worklist_folder", folder=str(tmp_path))
    missing = Endpoint.objects.create(name="wl2", kind="worklist_folder", folder=str(tmp_path / "nope"))
    assert check(client_with_key, there)["ok"] is True
    assert "is not a folder" in check(client_with_key, missing)["error"]


@pytest.mark.parametrize("endpoint_id", ["999", "abc", str(2**70)])
def test_the_endpoint_check_answers_404_for_unknown_ids(db, client_with_key: APIClient, endpoint_id: str) -> None:
    response = client_with_key.post(f"/api/simulator/endpoints/{endpoint_id}/check")
    assert response.status_code == 404
    assert "No endpoint with id" in error_of(response)["message"]


# -- what the launch form has ----------------------------------------------------------------------

def test_it_starts_a_run_with_poisson_arrivals_speed_and_transfer_syntax(scenario: Scenario,
                                                                         client_with_key: APIClient) -> None:
    response = client_with_key.post(RUNS, {"scenario": scenario.name, "arrival": "poisson", "rate_per_hour": 90.5,
                                           "speed": 60, "transfer_syntax": "jpegls", "max_instances_per_series": 3},
                                    format="json")
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.arrival, run.rate_per_hour) == ("poisson", 90.5)
    assert run.options["speed"] == 60 and run.options["transfer_syntax"] == "jpegls"
    detail = client_with_key.get(response.json()["url"]).json()
    assert (detail["arrival"], detail["rate_per_hour"], detail["speed"]) == ("poisson", 90.5, 60.0)
    assert (detail["transfer_syntax"], detail["max_instances_per_series"]) == ("jpegls", 3)


def test_a_rate_alone_means_poisson_and_all_at_once_drops_the_rate(scenario: Scenario,
                                                                   client_with_key: APIClient) -> None:
    poisson = client_with_key.post(RUNS, {"scenario": scenario.name, "rate_per_hour": 30}, format="json").json()
    assert Run.objects.get(pk=poisson["id"]).arrival == "poisson"
    burst = client_with_key.post(RUNS, {"scenario": scenario.name, "arrival": "all_at_once", "rate_per_hour": 30},
                                 format="json").json()
    assert (Run.objects.get(pk=burst["id"]).arrival, Run.objects.get(pk=burst["id"]).rate_per_hour) == (
        "all_at_once", None)


def _request_examples() -> list[dict]:
    from tests.api.test_schema import generated_schema

    operation = generated_schema()["paths"][RUNS]["post"]
    return [example["value"] for example in operation["requestBody"]["content"]["application/json"]["examples"]
            .values()]


def load_shipped() -> None:
    from django.conf import settings

    from exams.catalog_io import load_catalog, read_catalog_file
    from simulations.scenario_io import load_scenarios

    load_catalog(read_catalog_file(settings.BASE_DIR / "exams" / "fixtures" / "catalog.json"))
    load_scenarios()


@pytest.fixture
def shipped(db) -> None:
    load_shipped()


def test_every_openapi_example_of_post_runs_starts_a_run_on_the_shipped_catalog(shipped,
                                                                                 client_with_key: APIClient) -> None:
    examples = _request_examples()
    assert len(examples) >= 3
    for body in examples:
        assert body.get("patients", 1) <= 5 and "string" not in str(body)
        response = client_with_key.post(RUNS, body, format="json")
        assert response.status_code == 202, (body, response.content)
        Run.objects.filter(pk=response.json()["id"]).update(status=Run.Status.SUCCEEDED)  # not in flight


@pytest.mark.django_db(transaction=True)
def test_the_inline_openapi_example_runs_to_success_on_the_builtin_receivers(client_with_key: APIClient) -> None:
    load_shipped()
    body = next(b for b in _request_examples() if "steps" in b and b.get("send", True))
    created = client_with_key.post(RUNS, body, format="json").json()
    poll_until_finished(client_with_key, created["events_url"])
    for thread in threading.enumerate():
        if thread.name == f"run-{created['id']}":
            thread.join(30)
    detail = client_with_key.get(created["url"]).json()
    assert detail["status"] == "succeeded", detail
    assert [p["status"] for p in detail["patients"]] == ["passed"] * body["patients"]
