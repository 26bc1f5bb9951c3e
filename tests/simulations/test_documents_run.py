"""A study's documents in a run: the dose SR with every CT study, the optional KOS, text SR and PDF,
each sent with the images, listed by the MPPS, committed and verified — against our own receivers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from django.core.management.base import CommandError

from simulations.models import RunPatient, Scenario
from simulations.receivers import BuiltinReceivers
from simulations.steps import ScenarioError, parse_steps
from tests.conftest import require_binary
from tests.generators.test_sr_objects import _DCENTVFY_ARTEFACT
from tests.simulations.test_runner import runsim as _runsim, scenarios  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def chain(**generate_dicom) -> list[dict]:
    return [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "exam_id": "CT-ABDPEL-W"},
            {"step_type": "SEND_HL7"}, {"step_type": "SEND_DMWL"}, {"step_type": "MPPS_IN_PROGRESS"},
            {"step_type": "GENERATE_DICOM", **generate_dicom}, {"step_type": "SEND_DICOM"},
            {"step_type": "STORAGE_COMMIT"}, {"step_type": "MPPS_COMPLETED"}, {"step_type": "SEND_REPORT"}]


def run_chain(tmp_path: Path, steps: list[dict], patients: int = 2):
    """Run ``steps`` against built-in receivers of the test's own; (summary, receivers, rows)."""
    Scenario.objects.create(name="documents", steps=steps)
    with BuiltinReceivers(storage_dir=tmp_path / "received") as receivers:
        try:
            result = _runsim("--scenario", "documents", "--patients", str(patients), "--seed", "4",
                             "--max-instances", "2", "--hl7", f"127.0.0.1:{receivers.hl7_port}",
                             "--pacs", f"{receivers.storage.ae_title}@127.0.0.1:{receivers.storage.port}",
                             "--mpps", f"{receivers.mpps.ae_title}@127.0.0.1:{receivers.mpps.port}",
                             "--output", str(tmp_path / "run"))
        except CommandError as exc:  # a failed run: its summary says why (the tests assert on it)
            result = json.loads(exc.output)  # type: ignore[attr-defined]
        stored = receivers.storage.stored()
        mpps = {uid: instance.dataset for uid, instance in receivers.mpps.instances.items()}
    rows = list(RunPatient.objects.filter(run_id=result["run_id"]).order_by("index"))
    return result, stored, mpps, rows


def study_dir(result: dict, row: RunPatient) -> Path:
    return Path(result["output_dir"]) / row.study_instance_uid


def non_image_refs(mpps: pydicom.Dataset) -> dict[str, str]:
    return {item.ReferencedSOPInstanceUID: item.ReferencedSOPClassUID for series in mpps.PerformedSeriesSequence
            for item in series.ReferencedNonImageCompositeSOPInstanceSequence}


def test_a_ct_study_carries_its_dose_sr_to_the_pacs_the_mpps_and_the_commitment(scenarios, tmp_path):  # noqa: F811
    result, stored, mpps, rows = run_chain(tmp_path, chain())
    assert result["status"] == "succeeded", [r["error"] for r in result["patient_rows"]]
    assert [r.status for r in rows] == ["passed", "passed"]
    assert result["committed"] == result["instances_stored"] == result["instances_generated"] == len(stored)
    for row in rows:
        dose = pydicom.dcmread(study_dir(result, row) / "990_0001.dcm")
        assert dose.SOPClassUID == DOSE_SR and dose.Modality == "SR" and dose.SeriesNumber == 990
        assert (dose.PatientID, dose.AccessionNumber, dose.StudyInstanceUID) == (
            row.patient_id, row.accession_number, row.study_instance_uid)
        # the Storage SCP holds it, in the study's association, after the images
        held = [s for s in stored if s.study_instance_uid == row.study_instance_uid]
        assert held[-1].sop_instance_uid == dose.SOPInstanceUID and held[-1].sop_class_uid == DOSE_SR
        assert len({s.calling_ae_title for s in held}) == 1
        # the MPPS COMPLETED lists it as a non-image instance, never as an image, in a series of its own
        set_ds = mpps[dose.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID]
        assert set_ds.PerformedProcedureStepStatus == "COMPLETED"
        assert non_image_refs(set_ds) == {dose.SOPInstanceUID: DOSE_SR}
        images = {i.ReferencedSOPInstanceUID for s in set_ds.PerformedSeriesSequence for i in s.ReferencedImageSequence}
        assert dose.SOPInstanceUID not in images and images
        dose_series = [s for s in set_ds.PerformedSeriesSequence if s.SeriesInstanceUID == dose.SeriesInstanceUID]
        assert len(dose_series) == 1 and dose_series[0].ProtocolName == "Radiation Dose Report"
        protocols = {item.CodeMeaning for item in set_ds.PerformedProtocolCodeSequence}
        assert "Radiation Dose Report" not in protocols
        # the verification read it like an image
        assert row.verification["ok"] and row.verification["checked"]["document"] == 1


def test_the_optional_documents_carry_the_report_the_oru_carries(scenarios, tmp_path):  # noqa: F811
    steps = chain(key_images=True, text_report=True, pdf_report=True)
    result, stored, mpps, rows = run_chain(tmp_path, steps, patients=1)
    assert result["status"] == "succeeded", [r["error"] for r in result["patient_rows"]]
    (row,) = rows
    folder = study_dir(result, row)
    classes = {n: pydicom.dcmread(folder / f"{n}_0001.dcm").SOPClassUID for n in (990, 991, 992, 993)}
    assert classes == {990: DOSE_SR, 991: KOS, 992: BASIC_TEXT_SR, 993: PDF}
    held = {s.sop_instance_uid for s in stored}
    documents = {pydicom.dcmread(folder / f"{n}_0001.dcm").SOPInstanceUID: c for n, c in classes.items()}
    assert set(documents) <= held
    (set_ds,) = mpps.values()
    assert non_image_refs(set_ds) == documents
    assert result["committed"] == len(stored) == result["instances_generated"]
    assert row.verification["ok"] and row.verification["checked"]["document"] == 4
    # one report: the ORU's impression is the text SR's and the PDF's
    patient_dir = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
    oru = (patient_dir / "oru.hl7").read_text()
    text_sr = pydicom.dcmread(folder / "992_0001.dcm")
    texts = [item.TextValue for item in _walk(text_sr) if "TextValue" in item]
    impression = next(line for line in texts if line and line in oru)
    assert impression
    pdf = (folder / "993_0001.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    # the key images are images of the study
    kos = pydicom.dcmread(folder / "991_0001.dcm")
    keys = {sop.ReferencedSOPInstanceUID for study in kos.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    images = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in folder.glob("00*_*.dcm")}
    assert keys and keys <= images
    # what the Storage SCP received passes dciodvfy, and dcentvfy finds one patient and one study
    received = [s.path for s in stored if s.sop_instance_uid in documents]
    assert len(received) == 4
    for path in received:
        proc = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
        assert [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith(("Error", "Warning"))] == [], path
    files = [str(p) for p in sorted(folder.glob("*.dcm"))]
    proc = subprocess.run([require_binary("dcentvfy"), *files], capture_output=True, text=True, check=False)
    assert [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip() and _DCENTVFY_ARTEFACT not in line] == []


def _walk(ds: pydicom.Dataset):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk(item)


def test_dose_sr_false_sends_the_images_alone(scenarios, tmp_path):  # noqa: F811
    result, stored, mpps, rows = run_chain(tmp_path, chain(dose_sr=False), patients=1)
    assert result["status"] == "succeeded", [r["error"] for r in result["patient_rows"]]
    (row,) = rows
    assert not list(study_dir(result, row).glob("99*_*"))
    assert {s.sop_class_uid for s in stored}.isdisjoint({DOSE_SR, KOS, BASIC_TEXT_SR, PDF})
    (set_ds,) = mpps.values()
    assert non_image_refs(set_ds) == {}
    assert "document" not in row.verification["checked"]


def test_a_document_that_names_another_patient_fails_the_verification(scenarios, tmp_path):  # noqa: F811
    from simulations.artifacts import PatientFiles
    from simulations.verification import verify_patient

    result, _, _, rows = run_chain(tmp_path, chain(), patients=1)
    (row,) = rows
    dose_path = study_dir(result, row) / "990_0001.dcm"
    dose = pydicom.dcmread(dose_path)
    dose.PatientID = "SOMEONE-ELSE"
    dose.save_as(dose_path)
    files = PatientFiles.for_order(Path(result["output_dir"]), row.index, row.accession_number)
    verification = verify_patient(files, study_dir(result, row))
    assert not verification.ok
    assert {(m["artifact"], m["field"]) for m in verification.mismatches} == {("dicom 990_0001.dcm", "PatientID")}


def test_document_fields_of_generate_dicom_must_be_true_or_false():
    with pytest.raises(ScenarioError) as err:
        parse_steps([{"step_type": "GENERATE_HL7"}, {"step_type": "GENERATE_DICOM", "dose_sr": "no"}])
    assert "step 2 (GENERATE_DICOM): field dose_sr: must be true or false" in str(err.value)
    steps = parse_steps([{"step_type": "GENERATE_HL7"},
                         {"step_type": "GENERATE_DICOM", "key_images": True, "pdf_report": True}])
    assert steps[1].params == {"key_images": True, "pdf_report": True}

