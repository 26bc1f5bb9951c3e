"""A run of multi-frame exams (XA, RF) end to end against the built-in receivers: stored, committed, verified."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import XRayAngiographicImageStorage, XRayRadiofluoroscopicImageStorage

from simulations.models import Run
from tests.simulations.test_runner import runsim, scenarios, study_files  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize(("exam", "sop_class"), [("XA-HEAD-CEREBRAL", XRayAngiographicImageStorage),
                                                 ("RF-ESOPH-SWALLOW", XRayRadiofluoroscopicImageStorage)])
def test_a_multiframe_exam_runs_against_the_built_in_receivers_and_verifies(scenarios, tmp_path, exam,  # noqa: F811
                                                                            sop_class):
    result = runsim("--exam", exam, "--patients", "1", "--seed", "3", "--max-instances", "1",
                    "--output", str(tmp_path / "run"))
    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["passed"] == 1 and result["verified"] == 1
    assert result["received"]["dicom_instances"] == result["instances_stored"] == result["instances_generated"]
    assert result["committed"] == result["instances_stored"] > 0
    (row,) = Run.objects.get(pk=result["run_id"]).patients.all()
    files = study_files(result, row)
    # the images, and the X-Ray Radiation Dose SR every fluoroscopy-guided study sends after them
    *datasets, dose_sr = [pydicom.dcmread(p) for p in files]
    assert {ds.SOPClassUID for ds in datasets} == {sop_class}
    assert dose_sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.67" and files[-1].name == "990_0001.dcm"
    assert all(ds.NumberOfFrames > 1 and ds.pixel_array.shape[0] == ds.NumberOfFrames for ds in datasets)
    # the MPPS lists every multi-frame instance that was sent
    folder = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
    mpps = pydicom.Dataset.from_json(json.loads((folder / "mpps-set.json").read_text()))
    referenced = {item.ReferencedSOPInstanceUID for s in mpps.PerformedSeriesSequence
                  for item in s.ReferencedImageSequence}
    assert referenced == {ds.SOPInstanceUID for ds in datasets}
