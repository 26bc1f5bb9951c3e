"""Who sees which run over REST: a key its own runs, staff every run, and nobody learns of the others (404)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from simulations.models import Run, Scenario
from tests.api.test_runs_api import HL7_STEPS, RUNS, error_of


@pytest.fixture
def two_keys(catalog) -> tuple[APIClient, APIClient]:
    from apikeys.services import api_key_create

    Scenario.objects.create(name="HL7 only", steps=HL7_STEPS)
    clients = []
    for name in ("alice-ci", "bob-ci"):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=api_key_create(name=name)[1])
        clients.append(client)
    return clients[0], clients[1]


def start(client: APIClient) -> str:
    response = client.post(RUNS, {"scenario": "HL7 only"}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_run_started_with_a_key_is_owned_by_that_key(two_keys) -> None:
    alice, _ = two_keys
    run = Run.objects.get(pk=start(alice))
    assert run.api_key is not None and run.api_key.name == "alice-ci" and run.owner is None
    assert alice.get(f"{RUNS}/{run.pk}").json()["owner"] == "apikey:alice-ci"


def test_a_run_started_by_a_staff_session_is_owned_by_that_user(catalog, staff_client: APIClient) -> None:
    Scenario.objects.create(name="HL7 only", steps=HL7_STEPS)
    run = Run.objects.get(pk=start(staff_client))
    assert run.owner is not None and run.owner.username == "curator" and run.api_key is None


def test_a_key_lists_only_its_own_runs(two_keys) -> None:
    alice, bob = two_keys
    mine = {start(alice), start(alice)}
    theirs = start(bob)
    listed = alice.get(RUNS).json()
    assert listed["count"] == 2 and {r["id"] for r in listed["results"]} == mine
    assert [r["id"] for r in bob.get(RUNS).json()["results"]] == [theirs]


@pytest.mark.parametrize("operation", ["detail", "events", "cancel"])
def test_a_key_gets_404_for_a_run_of_another_key(two_keys, operation: str) -> None:
    alice, bob = two_keys
    run_id = start(bob)
    url = {"detail": f"{RUNS}/{run_id}", "events": f"{RUNS}/{run_id}/events",
           "cancel": f"{RUNS}/{run_id}/cancel"}[operation]
    response = alice.post(url) if operation == "cancel" else alice.get(url)
    assert response.status_code == 404, response.content
    assert error_of(response) == {"code": "not_found", "message": f"No run with id {run_id}.", "details": None}
    assert Run.objects.get(pk=run_id).cancel_requested is False
    own = bob.post(url) if operation == "cancel" else bob.get(url)
    assert own.status_code in (200, 202)


def test_staff_see_and_cancel_every_run_including_runsim_ones(two_keys, staff_client: APIClient) -> None:
    alice, bob = two_keys
    ids = {start(alice), start(bob)}
    cli = Run.objects.create(steps=HL7_STEPS, patient_count=1, seed=1)  # runsim/admin: no owner
    ids.add(str(cli.pk))
    assert {r["id"] for r in staff_client.get(RUNS).json()["results"]} == ids
    assert staff_client.get(f"{RUNS}/{cli.pk}").json()["owner"] is None
    assert staff_client.post(f"{RUNS}/{cli.pk}/cancel").status_code == 202
    assert alice.get(f"{RUNS}/{cli.pk}").status_code == 404


def test_a_revoked_key_sees_nothing_and_its_runs_stay_visible_to_staff(two_keys, staff_client: APIClient) -> None:
    from apikeys.models import ApiKey
    from apikeys.services import api_key_revoke

    alice, _ = two_keys
    run_id = start(alice)
    api_key_revoke(key=ApiKey.objects.get(name="alice-ci"))
    assert alice.get(f"{RUNS}/{run_id}").status_code == 401
    assert staff_client.get(f"{RUNS}/{run_id}").json()["owner"] == "apikey:alice-ci"
