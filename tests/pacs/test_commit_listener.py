"""One Storage Commitment listener per run: reports matched by Transaction UID, the address as users give it."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.endpoints import CommitListen, EndpointSet, endpoint_set_from_rows
from simulations.models import Endpoint
from simulations.transport.dimse.commitment import CommitmentListener, request_commitment
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.store import send_instances
from tests.conftest import free_port
from tests.transport.dicom_files import write_ct_series


@pytest.mark.parametrize(("text", "expected"), [
    ("4104", CommitListen("YEETER", "0.0.0.0", 4104)),
    ("127.0.0.1:4104", CommitListen("YEETER", "127.0.0.1", 4104)),
    ("MODALITY7@4104", CommitListen("MODALITY7", "0.0.0.0", 4104)),
    ("MODALITY7@10.1.2.3:4104", CommitListen("MODALITY7", "10.1.2.3", 4104)),
])
def test_it_reads_the_listen_address_in_every_form_the_flag_allows(text: str, expected: CommitListen) -> None:
    assert CommitListen.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "port from 1 to 65535"), ("host:", "port from 1 to 65535"), ("70000", "port from 1 to 65535"),
    ("@4104", "AE title before @ is empty"), (":4104", "host before : is empty"),
    ("A_VERY_LONG_AE_TITLE@4104", "not 1-16 printable ASCII"),
])
def test_it_rejects_a_listen_address_with_a_sentence(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CommitListen.parse(text)


@pytest.mark.django_db
def test_runsim_refuses_a_bad_commit_listen_address_before_running(catalog) -> None:
    from simulations.scenario_io import load_scenarios

    load_scenarios()
    with pytest.raises(CommandError, match="Bad --commit-listen: expected .*port from 1 to 65535") as raised:
        call_command("runsim", "--commit-listen", "YEETER@host:x", stdout=io.StringIO(), stderr=io.StringIO())
    assert raised.value.returncode == 2


@pytest.mark.django_db
def test_a_commitment_endpoint_with_a_listen_port_gives_the_run_its_listener() -> None:
    row = Endpoint.objects.create(name="pacs-commit", kind="commitment", host="10.0.0.5", port=104,
                                  ae_title="PACS", calling_ae_title="CT7", listen_host="", listen_port=4105)

    endpoints = endpoint_set_from_rows(Endpoint.objects.all(), defaults=[row])

    assert endpoints.commit_listen == CommitListen("CT7", "0.0.0.0", 4105)
    assert EndpointSet.from_json(endpoints.to_json()).commit_listen == endpoints.commit_listen  # the run snapshot


def test_one_listener_takes_the_reports_of_many_transactions_at_once(tmp_path: Path) -> None:
    listen_port = free_port()
    with StorageScp(storage_dir=tmp_path / "store", commitment_reply="new",
                    commitment_peers={"YEETER": listen_port}) as scp, \
            CommitmentListener(ae_title="YEETER", host="127.0.0.1", port=listen_port) as listener:
        batches = []
        for n in range(6):
            results = send_instances(scp.peer, write_ct_series(tmp_path / f"s{n}", count=2, seed=n + 1))
            batches.append([(r.sop_class_uid, r.sop_instance_uid) for r in results])
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(
                lambda n: request_commitment(scp.peer, batches[n], transaction_uid=f"2.25.900{n}", timeout=10,
                                             listener=listener), range(6)))

    for n, outcome in enumerate(outcomes):
        assert outcome.transaction_uid == f"2.25.900{n}"
        assert outcome.committed == batches[n] and not outcome.failed
        assert outcome.same_association is False


def test_a_report_on_the_same_association_still_arrives_when_a_listener_runs(tmp_path: Path) -> None:
    with StorageScp(storage_dir=tmp_path / "store") as scp, \
            CommitmentListener(ae_title="YEETER", host="127.0.0.1", port=free_port()) as listener:
        results = send_instances(scp.peer, write_ct_series(tmp_path / "s", count=2))
        pairs = [(r.sop_class_uid, r.sop_instance_uid) for r in results]
        outcome = request_commitment(scp.peer, pairs, transaction_uid="2.25.9100", timeout=10, listener=listener)
    assert outcome.same_association is True and outcome.committed == pairs


def test_a_report_nobody_awaits_is_acknowledged(tmp_path: Path) -> None:
    from simulations.transport.dimse.commitment import send_commitment_report
    from simulations.transport.dimse.commitment_info import CommitmentReport

    with CommitmentListener(ae_title="YEETER", host="127.0.0.1", port=free_port()) as listener:
        report = CommitmentReport("2.25.424242", (("1.2.840.10008.5.1.4.1.1.2", "2.25.1"),))
        # raises SendError unless the listener answers 0x0000
        send_commitment_report(DicomPeer("127.0.0.1", listener.port, "YEETER", calling_ae_title="PACS"),
                               report)


@pytest.mark.django_db
def test_the_api_creates_a_commitment_endpoint_with_its_listen_address_and_a_run_listens_there(
    django_user_model, catalog
) -> None:
    from rest_framework.test import APIClient

    from simulations.models import Run
    from simulations.scenario_io import load_scenarios

    load_scenarios()
    client = APIClient()
    client.force_login(django_user_model.objects.create_user("curator", password="pw", is_staff=True))
    created = client.post("/api/simulator/endpoints", {
        "name": "orthanc-commit", "kind": "commitment", "host": "127.0.0.1", "port": 4242, "ae_title": "ORTHANC",
        "listen_host": "127.0.0.1", "listen_port": 4104}, format="json")
    assert created.status_code == 201, created.json()
    assert (created.json()["listen_host"], created.json()["listen_port"]) == ("127.0.0.1", 4104)

    # (the test's transaction is never committed, so the run is recorded and not dispatched)
    started = client.post("/api/simulator/runs", {"scenario": "Full scheduled workflow", "patients": 1,
                                                  "endpoints": [created.json()["id"]]}, format="json")
    assert started.status_code == 202, started.json()
    run = Run.objects.get(pk=started.json()["id"])
    assert run.endpoints["commit_listen"] == {"ae_title": "YEETER", "host": "127.0.0.1", "port": 4104}


def test_runs_of_one_process_share_the_listener_of_an_address_until_the_last_one_ends() -> None:
    import socket

    from simulations.transport.dimse.commitment import acquire_listener, release_listener

    port = free_port()
    first = acquire_listener(ae_title="YEETER", host="127.0.0.1", port=port)
    second = acquire_listener(ae_title="YEETER", host="127.0.0.1", port=port)
    assert first is second
    release_listener(first)
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # still listening for the second run
    release_listener(second)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.django_db
def test_a_run_started_by_the_api_takes_its_listen_address_and_a_bad_one_is_a_400_naming_the_field(
    django_user_model, catalog
) -> None:
    from rest_framework.test import APIClient

    from simulations.models import Run
    from simulations.scenario_io import load_scenarios

    load_scenarios()
    client = APIClient()
    client.force_login(django_user_model.objects.create_user("runner", password="pw", is_staff=True))

    started = client.post("/api/simulator/runs", {"scenario": "Full scheduled workflow", "patients": 1,
                                                  "commit_listen": "MOD1@127.0.0.1:4106"}, format="json")
    bad = client.post("/api/simulator/runs", {"scenario": "Full scheduled workflow", "commit_listen": "MOD1@x:"},
                      format="json")

    assert started.status_code == 202, started.json()
    assert Run.objects.get(pk=started.json()["id"]).endpoints["commit_listen"] == {
        "ae_title": "MOD1", "host": "127.0.0.1", "port": 4106}
    assert bad.status_code == 400
    assert "commit_listen" in str(bad.json()["error"]["details"]) and "port from 1 to 65535" in str(bad.json())


@pytest.mark.parametrize(("args", "message"), [
    (["--commit-reply", "new", "--commit-peer", "YEETER"], "--commit-peer expects AET=PORT"),
    (["--commit-reply", "new", "--commit-peer", "YEETER=99999"], "--commit-peer expects AET=PORT"),
    (["--commit-peer", "YEETER=4104"], "only applies with --commit-reply new"),
    (["--station-aet", "MR"], "--station-aet expects MODALITY=AET"),
])
def test_serve_refuses_bad_receiver_options_with_a_sentence(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message) as raised:
        call_command("serve", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert raised.value.returncode == 2
