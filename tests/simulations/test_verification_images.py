"""Verification checks every image, even though it reads an image with pydicom only when its checked elements
differ from those of an image it already checked: a changed image anywhere in a series is named, under its
own name, and the results are those of checking each file with pydicom."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command

from simulations.artifacts import PatientFiles
from simulations.models import RunPatient
from simulations.verification import Verification, _check_dicom_file, _pps_start, verify_patient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def study(transactional_db, tmp_path: Path) -> tuple[PatientFiles, Path]:
    """One patient's files and study folder: a run of a CT exam, without sending, four images per series."""
    from exams.catalog_io import load_catalog
    from simulations.scenario_io import load_scenarios
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    load_scenarios()
    out = io.StringIO()
    call_command("runsim", "--patients", "1", "--seed", "3", "--max-instances", "4", "--no-send",
                 "--output", str(tmp_path / "run"), "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result
    row = RunPatient.objects.get(run_id=result["run_id"])
    run_dir = Path(result["output_dir"])
    return PatientFiles.for_order(run_dir, row.index, row.accession_number), run_dir / row.study_instance_uid


def _images(study_dir: Path) -> list[Path]:
    """The study's image files (not its documents), in the order verification reads them."""
    return [p for p in sorted(study_dir.glob("*.dcm")) if "PixelData" in pydicom.dcmread(p)]


def _each_with_pydicom(files: PatientFiles, study_dir: Path) -> Verification:
    """The image checks as they are without reuse: every file read and checked with pydicom."""
    v = Verification()
    ident = files.read_json("order.json")
    start = _pps_start(files.read_dataset("mpps-create.json"))
    for path in sorted(study_dir.glob("*.dcm")):
        _check_dicom_file(v, path, ident, start)
    return v


def _image_part(v: Verification) -> tuple[list, list]:
    def images(entries: list) -> list:
        return [e for e in entries if e["artifact"].startswith("dicom ")
                and e["field"] != "CurrentRequestedProcedureEvidenceSequence"]
    return images(v.checks), images(v.mismatches)


def _set(path: Path, **values: str) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def test_every_image_gets_the_checks_pydicom_would_give_it(study) -> None:
    files, study_dir = study
    images = _images(study_dir)
    assert len(images) >= 4  # series of several images: most are answered from an earlier one
    v = verify_patient(files, study_dir)
    assert v.ok, v.mismatches
    assert _image_part(v) == _image_part(_each_with_pydicom(files, study_dir))
    named = {e["artifact"] for e in v.checks}
    assert {f"dicom {p.name}" for p in images} <= named


def test_a_changed_image_after_identical_ones_is_named_alone(study) -> None:
    files, study_dir = study
    last = _images(study_dir)[-1]
    _set(last, PatientID="SOMEONE-ELSE", StudyDescription="ANOTHER EXAM")
    v = verify_patient(files, study_dir)
    assert {(m["artifact"], m["field"]) for m in v.mismatches} == {
        (f"dicom {last.name}", "PatientID"), (f"dicom {last.name}", "StudyDescription")}
    assert _image_part(v) == _image_part(_each_with_pydicom(files, study_dir))


def test_images_changed_alike_are_each_named(study) -> None:
    files, study_dir = study
    first, second = _images(study_dir)[:2]
    for path in (first, second):  # byte-identical checked elements: the second reuses the first's results
        _set(path, AccessionNumber="WRONG0001")
    v = verify_patient(files, study_dir)
    assert [(m["artifact"], m["field"]) for m in v.mismatches] == [
        (f"dicom {first.name}", "AccessionNumber"), (f"dicom {second.name}", "AccessionNumber")]
    assert _image_part(v) == _image_part(_each_with_pydicom(files, study_dir))


def test_an_image_cut_short_in_its_header_is_read_by_pydicom_and_reported(study) -> None:
    files, study_dir = study
    path = _images(study_dir)[1]
    path.write_bytes(path.read_bytes()[:1000])  # within the patient / study elements
    v = verify_patient(files, study_dir)
    assert not v.ok
    assert {m["artifact"] for m in v.mismatches} == {f"dicom {path.name}"}
    assert _image_part(v) == _image_part(_each_with_pydicom(files, study_dir))


def test_a_file_that_is_no_dicom_is_reported_as_unreadable(study) -> None:
    files, study_dir = study
    path = _images(study_dir)[2]
    path.write_bytes(b"not a DICOM file")
    v = verify_patient(files, study_dir)
    assert [(m["artifact"], m["field"], m["expected"]) for m in v.mismatches] == [
        (f"dicom {path.name}", "file", "a readable DICOM file"),
        # its SOP Instance UID is unknown, so the MPPS references an image the study does not have
        ("mpps-set", "ReferencedImageSequence", "instances of the generated study")]
