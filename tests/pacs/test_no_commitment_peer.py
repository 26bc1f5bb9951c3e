"""A PACS without Storage Commitment (dcmtk ``storescp``): the step is skipped with a warning, the patient goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError

from simulations.models import RunPatient
from tests.dcmtk import storescp
from tests.pacs.runs import events, runsim, scenario_with

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_every_patient_passes_with_a_warning_naming_the_peer(catalog_tx, tmp_path: Path) -> None:
    with storescp(tmp_path / "received") as peer:
        result = runsim("--patients", "3", "--seed", "201", "--max-instances", "2", "--output",
                        str(tmp_path / "run"), "--pacs", f"STORESCP@127.0.0.1:{peer.port}")

    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["passed"] == 3 and result["committed"] == 0
    assert result["instances_stored"] == result["instances_generated"] > 0
    skipped = [e for e in events(result["run_id"], "step.skipped") if e.step_type == "STORAGE_COMMIT"]
    assert len(skipped) == 3
    for event in skipped:
        assert event.level == "warning"
        assert f"STORESCP@127.0.0.1:{peer.port} does not offer Storage Commitment" in event.message
    # the chain went on: MPPS COMPLETED and the report for every patient
    assert result["mpps"] == 6 and result["reports"] == 3


def test_a_required_commitment_fails_the_patient_instead(catalog_tx, tmp_path: Path) -> None:
    scenario_with("Commitment required", STORAGE_COMMIT={"required": True})
    with storescp(tmp_path / "received") as peer, pytest.raises(CommandError) as raised:
        runsim("--scenario", "Commitment required", "--patients", "1", "--seed", "202", "--max-instances", "1",
               "--output", str(tmp_path / "run"), "--pacs", f"STORESCP@127.0.0.1:{peer.port}")

    (row,) = raised.value.summary["patient_rows"]  # type: ignore[attr-defined]
    assert row["status"] == RunPatient.Status.FAILED
    assert "does not offer Storage Commitment" in row["error"] and "STORAGE_COMMIT" in row["error"]


def test_a_listen_port_already_taken_ends_the_run_in_error_saying_so(catalog_tx, tmp_path: Path) -> None:
    import socket

    from simulations.models import Run

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as raised:
            runsim("--patients", "1", "--seed", "203", "--max-instances", "1", "--output", str(tmp_path / "run"),
                   "--commit-listen", f"127.0.0.1:{port}")

    assert f"cannot listen for Storage Commitment reports on YEETER@127.0.0.1:{port}" in str(raised.value)
    assert Run.objects.get().status == Run.Status.ERROR


def test_runsim_against_an_external_pacs_without_a_listener_says_how_to_get_reports_on_a_new_association(
    catalog_tx, tmp_path: Path
) -> None:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    with storescp(tmp_path / "received") as peer:
        call_command("runsim", "--patients", "1", "--seed", "204", "--max-instances", "1", "--output",
                     str(tmp_path / "run"), "--pacs", f"STORESCP@127.0.0.1:{peer.port}", stdout=out,
                     stderr=io.StringIO())

    assert "pass --commit-listen [AET@][HOST:]PORT and register it in the PACS" in out.getvalue()
