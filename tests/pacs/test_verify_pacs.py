"""VERIFY_PACS: what the PACS holds compared with what was sent; our own Storage SCP made queryable."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from simulations.pacs_verify import SentSeries, SentStudy, compare, verify_pacs
from simulations.transport.dimse.query import StudyRootQueryScp, find_study_root, level_query
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.store import send_instances
from simulations.transport.errors import SendError
from tests.conftest import free_port, require_binary
from tests.dcmtk import DCMTK_ENV
from tests.pacs.runs import events, runsim
from tests.transport.dicom_files import write_ct_series

SENT = SentStudy(patient_id="MRN1", patient_name="NÚÑEZ^ZOË", accession_number="A1", study_instance_uid="1.2.3",
                 study_description="MR KNEE", series=(SentSeries("1.2.3.1", "MR", "1", 3),
                                                      SentSeries("1.2.3.2", "MR", "2", 2)))


def answer(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def study_answer(**changes: object) -> Dataset:
    values = {"PatientID": "MRN1", "PatientName": "NÚÑEZ^ZOË^^", "AccessionNumber": "A1",
              "StudyDescription": "MR KNEE", "NumberOfStudyRelatedSeries": 2, **changes}
    return answer(**values)


def series_answers() -> list[Dataset]:
    return [answer(SeriesInstanceUID="1.2.3.1", Modality="MR", NumberOfSeriesRelatedInstances=3),
            answer(SeriesInstanceUID="1.2.3.2", Modality="MR", NumberOfSeriesRelatedInstances=2)]


def test_a_study_held_as_sent_has_no_difference_trailing_name_components_aside() -> None:
    assert compare(SENT, [study_answer()], series_answers()) == []


@pytest.mark.parametrize(("change", "attribute", "expected", "found"), [
    ({"PatientID": "MRN2"}, "PatientID", "MRN1", "MRN2"),
    ({"PatientName": "NUNEZ^ZOE"}, "PatientName", "NÚÑEZ^ZOË", "NUNEZ^ZOE"),
    ({"AccessionNumber": ""}, "AccessionNumber", "A1", ""),
    ({"StudyDescription": "MR KNEE LEFT"}, "StudyDescription", "MR KNEE", "MR KNEE LEFT"),
    ({"NumberOfStudyRelatedSeries": 3}, "NumberOfStudyRelatedSeries", "2", "3"),
])
def test_a_study_level_difference_names_the_attribute_expected_and_found(change, attribute, expected, found) -> None:
    (difference,) = compare(SENT, [study_answer(**change)], series_answers())
    assert (difference.attribute, difference.expected, difference.found) == (attribute, expected, found)


def test_series_level_differences_name_the_series() -> None:
    series = series_answers()
    series[0].Modality = "CT"
    series[1].NumberOfSeriesRelatedInstances = 1
    series.append(answer(SeriesInstanceUID="9.9", Modality="SR", NumberOfSeriesRelatedInstances=1))

    found = [str(d) for d in compare(SENT, [study_answer(NumberOfStudyRelatedSeries="")], series)]

    assert found == ["number of series: expected '2', found '3'",
                     "series 1 (1.2.3.1) Modality: expected 'MR', found 'CT'",
                     "series 2 (1.2.3.2) NumberOfSeriesRelatedInstances: expected '2', found '1'",
                     "series 9.9: expected 'not sent', found 'present in the PACS'"]


def test_a_study_the_pacs_does_not_have_is_one_difference() -> None:
    assert [str(d) for d in compare(SENT, [], [])] == [
        "study 1.2.3: expected 'stored', found 'not found by a STUDY-level C-FIND'"]


@pytest.fixture
def received(tmp_path: Path) -> Iterator[tuple[StorageScp, StudyRootQueryScp, list[Path]]]:
    files = write_ct_series(tmp_path / "sent", count=3)
    for i, path in enumerate(files):
        path.rename(path.with_name(f"001_{i + 1:05d}.dcm"))  # the generator's <series>_<instance>.dcm
    files = sorted((tmp_path / "sent").glob("*.dcm"))
    with StorageScp(storage_dir=tmp_path / "store") as scp, \
            StudyRootQueryScp(storage_dir=tmp_path / "store", port=free_port()) as query:
        assert all(r.stored for r in send_instances(scp.peer, files))
        yield scp, query, files


def test_our_query_scp_answers_for_what_our_storage_scp_received(received) -> None:
    scp, query, files = received
    sent = SentStudy.from_files(files)

    assert verify_pacs(query.peer, sent, timeout=10).ok

    scp.find(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID).path.unlink()
    (difference,) = verify_pacs(query.peer, sent, timeout=10).differences
    assert (difference.expected, difference.found) == ("3", "2")


def test_our_query_scp_refuses_a_series_query_without_its_study(received) -> None:
    _, query, _ = received
    with pytest.raises(SendError) as raised:
        find_study_root(query.peer, level_query("SERIES", {"SeriesInstanceUID": "", "Modality": ""}), timeout=10)
    assert raised.value.status == 0xA900


@pytest.mark.interop
def test_findscu_study_root_query_gets_the_counts_from_our_query_scp(received, tmp_path: Path) -> None:
    _, query, files = received
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    findscu = require_binary("findscu")
    out = tmp_path / "rsp"
    out.mkdir()
    result = subprocess.run(
        [findscu, "-S", "-aec", query.ae_title, "-X", "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
         "-k", f"StudyInstanceUID={uid}", "-k", "NumberOfStudyRelatedInstances", "-k", "ModalitiesInStudy",
         "-k", "PatientID", "127.0.0.1", str(query.port)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    (rsp,) = [pydicom.dcmread(p) for p in out.glob("rsp*.dcm")]
    assert (rsp.NumberOfStudyRelatedInstances, rsp.ModalitiesInStudy, rsp.QueryRetrieveLevel) == (3, "CT", "STUDY")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_runsim_verify_pacs_against_the_built_in_receivers_passes_every_patient(catalog_tx, tmp_path: Path) -> None:
    result = runsim("--patients", "2", "--seed", "301", "--max-instances", "2", "--output", str(tmp_path / "run"),
                    "--verify-pacs")

    assert result["status"] == "succeeded", result["patient_rows"]
    verified = events(result["run_id"], "pacs.verified")
    assert len(verified) == 2 and all("YEETER_QR@" in e.message for e in verified)
    from simulations.models import RunPatient

    assert all(r.verification["checked"]["pacs"] == 1 for r in RunPatient.objects.filter(run_id=result["run_id"]))


def test_re_verifying_a_patient_reports_what_the_pacs_held_differently(tmp_path: Path) -> None:
    from generators.terms import Modality
    from simulations.artifacts import PatientFiles, identity_json
    from simulations.pacs_verify import Difference
    from simulations.verification import verify_patient
    from tests.examples import order_for

    order = order_for(Modality.MR)
    files = PatientFiles.for_order(tmp_path, 0, order.accession_number)
    files.write_json("order.json", identity_json(order))
    files.write_json("pacs-verify.json", {"ok": False, "differences": [
        Difference("StudyDescription", "MR KNEE", "MR KNEE LEFT").to_json()]})

    result = verify_patient(files, None)

    assert result.mismatches == [{"artifact": "pacs", "field": "StudyDescription", "expected": "MR KNEE",
                                  "actual": "MR KNEE LEFT"}]


@pytest.mark.parametrize(("qido", "message"), [
    ("ftp://pacs/dicom-web", "expected an http:// or https:// DICOMweb base URL"),
    ("http://pacs/dicom-web?x=1", "must not carry a query"),
])
def test_a_verify_pacs_step_with_a_bad_qido_url_is_refused_naming_the_field(qido: str, message: str) -> None:
    from simulations.steps import ScenarioError, parse_steps

    steps = [{"step_type": "GENERATE_HL7"}, {"step_type": "GENERATE_DICOM"}, {"step_type": "SEND_DICOM"},
             {"step_type": "VERIFY_PACS", "qido": qido}]
    with pytest.raises(ScenarioError) as raised:
        parse_steps(steps)
    (problem,) = raised.value.problems
    assert problem.startswith("step 4 (VERIFY_PACS): field qido: ") and message in problem


def test_verify_pacs_needs_a_send_dicom_step_before_it() -> None:
    from simulations.steps import ScenarioError, parse_steps

    with pytest.raises(ScenarioError, match=r"step 2 \(VERIFY_PACS\): VERIFY_PACS compares .* put a SEND_DICOM step"):
        parse_steps([{"step_type": "GENERATE_HL7"}, {"step_type": "VERIFY_PACS"}])


def test_our_query_scp_answers_c_echo(received) -> None:
    from simulations.transport.dimse.echo import echo

    _, query, _ = received
    assert echo(query.peer) < 5
