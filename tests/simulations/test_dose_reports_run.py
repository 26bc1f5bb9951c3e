"""The dose report of an angiography, a fluoroscopy and a PET/CT exam of the shipped catalog in a run: made by
default, sent after the images to the built-in Storage SCP, listed by the MPPS, committed and verified."""

from __future__ import annotations

import subprocess

import pydicom
import pytest

from tests.conftest import require_binary
from tests.simulations.test_documents_run import DOSE_SR, non_image_refs, run_chain, study_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RADIOPHARMACEUTICAL_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"


@pytest.fixture
def catalog(transactional_db):
    from exams.catalog_io import SHIPPED_CATALOG, load_catalog, read_catalog_file
    from simulations.scenario_io import load_scenarios

    load_catalog(read_catalog_file(SHIPPED_CATALOG))
    load_scenarios()


def chain(exam_id: str) -> list[dict]:
    return [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "exam_id": exam_id},
            {"step_type": "SEND_HL7"}, {"step_type": "SEND_DMWL"}, {"step_type": "MPPS_IN_PROGRESS"},
            {"step_type": "GENERATE_DICOM"}, {"step_type": "SEND_DICOM"}, {"step_type": "STORAGE_COMMIT"},
            {"step_type": "MPPS_COMPLETED"}]


@pytest.mark.parametrize(("exam_id", "reports"), [
    ("XA-HEAD-CEREBRAL", {990: DOSE_SR}),
    ("RF-ESOPH-SWALLOW", {990: DOSE_SR}),
    # a PET/CT: the X-ray dose of its CT series and the radiopharmaceutical it was given
    ("PT-WHOLEBODY-FDG", {990: DOSE_SR, 994: RADIOPHARMACEUTICAL_DOSE_SR}),
])
def test_the_exam_sends_its_dose_reports_by_default_and_verifies(catalog, tmp_path, exam_id, reports):
    result, stored, mpps, rows = run_chain(tmp_path, chain(exam_id), patients=1)
    assert result["status"] == "succeeded", [r["error"] for r in result["patient_rows"]]
    (row,) = rows
    made = {number: pydicom.dcmread(study_dir(result, row) / f"{number:03d}_0001.dcm") for number in reports}
    for number, report in made.items():
        assert report.SOPClassUID == reports[number] and report.Modality == "SR"
        assert (report.PatientID, report.AccessionNumber, report.StudyInstanceUID) == (
            row.patient_id, row.accession_number, row.study_instance_uid)
    # the Storage SCP holds them, after the images of the study, and what it holds passes dciodvfy
    held = [s for s in stored if s.study_instance_uid == row.study_instance_uid]
    last = held[-len(reports):]
    assert [(s.sop_instance_uid, s.sop_class_uid) for s in last] == [
        (r.SOPInstanceUID, r.SOPClassUID) for _, r in sorted(made.items())]
    for received in last:
        proc = subprocess.run([require_binary("dciodvfy"), str(received.path)], capture_output=True, text=True,
                              check=False)
        assert [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith(("Error", "Warning"))] == []
    # the MPPS COMPLETED lists them as the non-image instances; everything stored was committed
    (set_ds,) = mpps.values()
    assert non_image_refs(set_ds) == {r.SOPInstanceUID: r.SOPClassUID for r in made.values()}
    assert result["committed"] == result["instances_stored"] == result["instances_generated"] == len(stored)
    # the whole-patient verification read them as documents of the study
    assert row.verification["ok"], row.verification["mismatches"]
    assert row.verification["checked"]["document"] == len(reports)
