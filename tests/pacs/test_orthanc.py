"""Against Orthanc 1.10 as the PACS: storage commitment on a new association, VERIFY_PACS, the REST view.

Orthanc, like most archives, sends its N-EVENT-REPORT on an association it opens to the modality
registered in ``DicomModalities`` (PS3.4 J.3.3). One Orthanc serves this module (short-lived, free
ports, configuration in a temporary folder); each test empties it first and uses its own seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from django.core.management.base import CommandError

from simulations.models import Run
from simulations.pacs_verify import SentStudy, verify_pacs, verify_pacs_qido
from simulations.transport.dimse.commitment import request_commitment
from simulations.transport.dimse.store import send_instances
from simulations.transport.errors import SendError
from tests.orthanc import Orthanc, orthanc
from tests.pacs.runs import events, runsim, sent_series
from tests.transport.dicom_files import write_ct_series

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with orthanc(tmp_path_factory.mktemp("orthanc"), dicomweb=True) as server:
        yield server


@pytest.fixture
def empty_pacs(pacs: Orthanc) -> Orthanc:
    pacs.clear()
    return pacs


def orthanc_view(pacs: Orthanc) -> dict[str, dict]:
    """Orthanc's REST view: study UID -> its tags, and per series UID its modality and instance count."""
    view = {}
    for study in pacs.get("/studies?expand"):
        series = {}
        for series_id in study["Series"]:
            s = pacs.get(f"/series/{series_id}")
            series[s["MainDicomTags"]["SeriesInstanceUID"]] = (s["MainDicomTags"].get("Modality"), len(s["Instances"]))
        view[study["MainDicomTags"]["StudyInstanceUID"]] = {**study["MainDicomTags"], **study["PatientMainDicomTags"],
                                                            "series": series}
    return view


@pytest.mark.django_db(transaction=True)
def test_three_patients_commit_on_a_new_association_and_orthanc_holds_what_was_ordered(
    catalog_tx, empty_pacs: Orthanc, tmp_path: Path
) -> None:
    pacs = empty_pacs
    result = runsim("--patients", "3", "--seed", "101", "--max-instances", "2", "--output", str(tmp_path / "run"),
                    "--pacs", f"ORTHANC@127.0.0.1:{pacs.peer.port}",
                    "--commit-listen", f"YEETER@127.0.0.1:{pacs.commit_port}", "--verify-pacs")

    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["passed"] == 3
    assert result["committed"] == result["instances_stored"] == result["instances_generated"] > 0
    reports = events(result["run_id"], "commitment.result")
    assert len(reports) == 3 and all(e.payload["same_association"] is False for e in reports)
    assert len(events(result["run_id"], "pacs.verified")) == 3
    view = orthanc_view(pacs)
    rows = list(Run.objects.get(pk=result["run_id"]).patients.order_by("index"))
    assert set(view) == {r.study_instance_uid for r in rows}
    for row in rows:
        study = view[row.study_instance_uid]
        first = pydicom.dcmread(next((Path(result["output_dir"]) / row.study_instance_uid).glob("*.dcm")),
                                stop_before_pixels=True)
        assert (study["PatientID"], study["PatientName"], study["AccessionNumber"]) == (
            row.patient_id, row.patient_name, row.accession_number)
        assert study["StudyDescription"] == first.StudyDescription
        counts = sorted(n for _, n in study["series"].values())
        assert counts == sorted(sent_series(result["output_dir"], row).values())
        # the images, and the dose report of an ionising-radiation study (committed and verified with them)
        dose = {"SR"} if row.modality in {"CT", "DX", "CR", "MG", "XA", "RF", "PT"} else set()
        attenuation = {"CT"} if row.modality == "PT" else set()  # PET/CT: its CT-AC series in the same study
        assert {m for m, _ in study["series"].values()} == {row.modality} | dose | attenuation


def test_without_a_listener_the_timeout_says_to_pass_commit_listen(empty_pacs: Orthanc, tmp_path: Path) -> None:
    results = send_instances(empty_pacs.peer, write_ct_series(tmp_path / "s", count=2))
    pairs = [(r.sop_class_uid, r.sop_instance_uid) for r in results]

    with pytest.raises(SendError) as raised:
        request_commitment(empty_pacs.peer, pairs, transaction_uid="2.25.7001", timeout=2)

    assert "within 2 s" in str(raised.value)
    assert "pass --commit-listen" in str(raised.value) and "register YEETER" in str(raised.value)


@pytest.mark.django_db(transaction=True)
def test_a_listener_on_a_port_orthanc_does_not_know_times_out_naming_the_address_to_register(
    catalog_tx, empty_pacs: Orthanc, tmp_path: Path
) -> None:
    from tests.conftest import free_port
    from tests.pacs.runs import scenario_with

    scenario_with("Short commit wait", STORAGE_COMMIT={"timeout": 2})
    wrong = free_port()
    with pytest.raises(CommandError) as raised:
        runsim("--scenario", "Short commit wait", "--patients", "1", "--seed", "102", "--max-instances", "1",
               "--output", str(tmp_path / "run"), "--pacs", f"ORTHANC@127.0.0.1:{empty_pacs.peer.port}",
               "--commit-listen", f"127.0.0.1:{wrong}")

    (row,) = raised.value.summary["patient_rows"]  # type: ignore[attr-defined]
    assert row["status"] == "failed"
    assert "STORAGE_COMMIT" in row["error"]
    assert f"register YEETER@127.0.0.1:{wrong} in the PACS (ORTHANC)" in row["error"]


def test_verify_pacs_names_the_series_whose_instance_orthanc_lost(empty_pacs: Orthanc, tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", count=3)
    for i, path in enumerate(files):  # the generator's names: <series>_<instance>.dcm
        path.rename(path.with_name(f"001_{i + 1:05d}.dcm"))
    files = sorted((tmp_path / "s").glob("*.dcm"))
    send_instances(empty_pacs.peer, files)
    sent = SentStudy.from_files(files)
    assert verify_pacs(empty_pacs.peer, sent, timeout=10).ok

    lost = pydicom.dcmread(files[1], stop_before_pixels=True).SOPInstanceUID
    (instance,) = [i for i in empty_pacs.get("/instances?expand") if i["MainDicomTags"]["SOPInstanceUID"] == lost]
    empty_pacs.delete(f"/instances/{instance['ID']}")
    result = verify_pacs(empty_pacs.peer, sent, timeout=10)

    assert not result.ok
    (difference,) = result.differences
    assert difference.attribute.endswith("NumberOfSeriesRelatedInstances")
    assert (difference.expected, difference.found) == ("3", "2")


def stored_series(pacs: Orthanc, tmp_path: Path, count: int = 3) -> list[Path]:
    files = write_ct_series(tmp_path / "s", count=count)
    for i, path in enumerate(files):  # the generator's names: <series>_<instance>.dcm
        path.rename(path.with_name(f"001_{i + 1:05d}.dcm"))
    files = sorted((tmp_path / "s").glob("*.dcm"))
    assert all(r.stored for r in send_instances(pacs.peer, files))
    return files


def test_verify_pacs_over_qido_rs_finds_what_c_find_finds(empty_pacs: Orthanc, tmp_path: Path) -> None:
    files = stored_series(empty_pacs, tmp_path)
    sent = SentStudy.from_files(files)
    base = f"{empty_pacs.url}/dicom-web"

    assert verify_pacs_qido(base, sent, timeout=10).ok

    lost = pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
    (instance,) = [i for i in empty_pacs.get("/instances?expand") if i["MainDicomTags"]["SOPInstanceUID"] == lost]
    empty_pacs.delete(f"/instances/{instance['ID']}")
    over_web, over_dimse = verify_pacs_qido(base, sent, timeout=10), verify_pacs(empty_pacs.peer, sent, timeout=10)

    assert [str(d) for d in over_web.differences] == [str(d) for d in over_dimse.differences]
    assert over_web.differences[0].found == "2"


def test_a_qido_url_that_is_not_dicomweb_fails_with_the_http_status(empty_pacs: Orthanc, tmp_path: Path) -> None:
    sent = SentStudy.from_files(stored_series(empty_pacs, tmp_path, count=1))
    with pytest.raises(SendError, match=r"QIDO-RS .*/no-such-root/studies\?.* answered HTTP 404"):
        verify_pacs_qido(f"{empty_pacs.url}/no-such-root", sent, timeout=10)


@pytest.mark.django_db(transaction=True)
def test_runsim_qido_verifies_the_study_in_orthanc_over_dicomweb(catalog_tx, empty_pacs: Orthanc,
                                                               tmp_path: Path) -> None:
    result = runsim("--patients", "1", "--seed", "103", "--max-instances", "1", "--output", str(tmp_path / "run"),
                    "--pacs", f"ORTHANC@127.0.0.1:{empty_pacs.peer.port}",
                    "--commit-listen", f"YEETER@127.0.0.1:{empty_pacs.commit_port}",
                    "--qido", f"{empty_pacs.url}/dicom-web")

    assert result["status"] == "succeeded", result["patient_rows"]
    (verified,) = events(result["run_id"], "pacs.verified")
    assert f"{empty_pacs.url}/dicom-web holds the study as sent" in verified.message
