"""Two runs with one seed tell the same stories under different identifiers; ``--replay-ids`` repeats them.

A PACS keys studies by Study Instance UID and a RIS by accession number: two runs that reuse them for
different exams merge a CT and an MR into one study. The seed reproduces exams, patients and pixels; the
identifiers are the run's own unless ``--replay-ids`` asks for the seed's. The performed procedure step
minted with the order is the same in MPPS and in every image.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command

from simulations.models import RunPatient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def scenarios(transactional_db):
    from exams.catalog_io import load_catalog
    from simulations.scenario_io import load_scenarios
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    load_scenarios()


def _run(tmp_path: Path, name: str, *extra: str) -> dict:
    out = io.StringIO()
    call_command("runsim", "--patients", "3", "--seed", "7", "--max-instances", "2", "--no-send",
                 "--output", str(tmp_path / name), *extra, "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result
    return result


def _story(result: dict) -> dict[str, object]:
    """What a run made: per patient the exam and patient, the pixel hashes, and every identifier."""
    rows = list(RunPatient.objects.filter(run_id=result["run_id"]).order_by("index"))
    story: dict[str, object] = {"exams": [], "pixels": [], "accessions": set(), "uids": set(), "headers": []}
    for row in rows:
        story["exams"].append((row.exam_code, row.patient_id, row.patient_name))
        story["accessions"].add(row.accession_number)
        for path in sorted((Path(result["output_dir"]) / row.study_instance_uid).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            if "PixelData" in ds:  # not the study's documents (dose SR)
                story["pixels"].append((path.name, hashlib.sha256(ds.PixelData).hexdigest()))
            story["uids"] |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
            story["headers"].append(ds)
    return story


def test_two_runs_with_one_seed_share_exams_patients_and_pixels_but_no_uid_or_accession(scenarios, tmp_path):
    first, second = _story(_run(tmp_path, "a")), _story(_run(tmp_path, "b"))
    assert first["exams"] == second["exams"] and first["pixels"] == second["pixels"]
    assert len(first["pixels"]) > 3
    assert not first["accessions"] & second["accessions"]
    assert not first["uids"] & second["uids"]


def test_replay_ids_reproduces_the_identifiers_of_the_seed(scenarios, tmp_path):
    first, second = _story(_run(tmp_path, "a", "--replay-ids")), _story(_run(tmp_path, "b", "--replay-ids"))
    assert first["exams"] == second["exams"] and first["pixels"] == second["pixels"]
    assert first["accessions"] == second["accessions"] and first["uids"] == second["uids"]


def test_mpps_and_every_image_name_the_same_performed_procedure_step(scenarios, tmp_path):
    result = _run(tmp_path, "a")
    for row in RunPatient.objects.filter(run_id=result["run_id"]):
        folder = next(p for p in Path(result["output_dir"]).rglob("order.json") if row.accession_number in str(p))
        order = json.loads(folder.read_text())
        create = json.loads((folder.parent / "mpps-create.json").read_text())
        pps_id = create["00400253"]["Value"][0]
        start = (create["00400244"]["Value"][0], create["00400245"]["Value"][0])
        assert pps_id == order["pps_id"] and order["mpps_uid"]
        instances = [pydicom.dcmread(p, stop_before_pixels=True)
                     for p in (Path(result["output_dir"]) / row.study_instance_uid).glob("*.dcm")]
        images = [ds for ds in instances if ds.Modality == row.modality]
        assert images
        for ds in instances:  # the documents too (the dose SR): they name the step that acquired the images
            assert ds.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == order["mpps_uid"]
        for ds in images:
            assert ds.PerformedProcedureStepID == pps_id != ds.RequestAttributesSequence[0].ScheduledProcedureStepID
            assert ds.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == order["mpps_uid"]
            assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == start


def test_verification_names_an_image_whose_performed_step_differs_from_mpps(scenarios, tmp_path):
    from simulations.artifacts import PatientFiles
    from simulations.verification import verify_patient

    result = _run(tmp_path, "a")
    row = RunPatient.objects.filter(run_id=result["run_id"]).order_by("index").first()
    files = PatientFiles.for_order(Path(result["output_dir"]), row.index, row.accession_number)
    study_dir = Path(result["output_dir"]) / row.study_instance_uid
    assert verify_patient(files, study_dir).ok
    path = sorted(study_dir.glob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    ds.PerformedProcedureStepID = "PPS0000000000000"
    ds.PerformedProcedureStepStartTime = "000001"
    ds.save_as(path)
    fields = {m["field"] for m in verify_patient(files, study_dir).mismatches}
    assert {"PerformedProcedureStepID", "PerformedProcedureStepStartDate/Time (as in MPPS)"} <= fields
