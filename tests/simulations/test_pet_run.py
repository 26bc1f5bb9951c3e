"""A PET/CT exam run end to end against the built-in receivers: HL7, worklist, MPPS, the CT attenuation and
PET series stored, committed and verified."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command

from simulations.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def scenarios(transactional_db):
    from exams.catalog_io import SHIPPED_CATALOG, load_catalog, read_catalog_file
    from simulations.scenario_io import load_scenarios

    load_catalog(read_catalog_file(SHIPPED_CATALOG))  # the shipped exams and their staging indications
    load_scenarios()


def test_a_pet_ct_exam_runs_to_the_built_in_receivers_and_verifies(scenarios, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("runsim", "--exam", "PT-WHOLEBODY-FDG", "--patients", "2", "--seed", "3", "--max-instances", "2",
                 "--output", str(tmp_path / "run"), "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["passed"] == 2 and result["verified"] == 2
    assert result["received"]["dicom_instances"] == result["instances_stored"] == result["instances_generated"]
    assert result["committed"] == result["instances_stored"]
    run = Run.objects.get(pk=result["run_id"])
    for row in run.patients.all():
        assert row.modality == "PT"
        files = sorted((Path(result["output_dir"]) / row.study_instance_uid).glob("*.dcm"))
        datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
        images = [ds for ds in datasets if ds.Modality in ("CT", "PT")]
        assert {ds.Modality for ds in images} == {"CT", "PT"}
        assert len({ds.FrameOfReferenceUID for ds in images}) == 1
        assert {ds.AccessionNumber for ds in datasets} == {row.accession_number}
        pet = [ds for ds in images if ds.Modality == "PT"]
        assert all(ds.Units == "BQML" and float(ds.PatientWeight) > 0 for ds in pet)
        folder = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
        mpps = pydicom.Dataset.from_json(json.loads((folder / "mpps-set.json").read_text()))
        referenced = {item.ReferencedSOPInstanceUID for series in mpps.PerformedSeriesSequence
                      for item in series.ReferencedImageSequence}
        assert {ds.SOPInstanceUID for ds in images} <= referenced
