"""A hostile free-text indication crosses the whole chain on loopback and every artifact still agrees.

The indication holds every HL7 delimiter, a DICOM value separator (``\\``), a PN separator and a
control character. The order must validate (hl7apy strict), the worklist item found by C-FIND, MPPS and
every image must carry it as one value, and verification must pass.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command

from generators.vr import dicom_text
from simulations.models import RunPatient, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TEXT = "Fall\\injury ^left| hip & ~ knee=pain\x07 (R/O fracture)"


@pytest.fixture
def hostile_scenario(transactional_db) -> str:
    from exams.catalog_io import load_catalog
    from simulations.scenario_io import load_scenarios
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    load_scenarios()
    steps = [dict(s) for s in Scenario.objects.get(name="Full scheduled workflow").steps]
    for step in steps:
        if step["step_type"] == "GENERATE_HL7":
            step.update({"exam_id": "MR-KNEE-RIGHT-WO", "indication": {"text": TEXT, "icd10": "W19.XXXA"}})
    Scenario.objects.create(name="Hostile indication", steps=steps)
    return "Hostile indication"


def test_a_hostile_indication_stays_one_value_across_hl7_worklist_mpps_and_images(hostile_scenario, tmp_path):
    out = io.StringIO()
    call_command("runsim", "--scenario", hostile_scenario, "--patients", "1", "--max-instances", "1", "--validate",
                 "--seed", "3", "--output", str(tmp_path / "run"), "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result
    row = RunPatient.objects.get(run_id=result["run_id"])
    assert row.status == RunPatient.Status.PASSED, row.error
    run_dir = Path(result["output_dir"])
    assert next(run_dir.rglob("worklist-found.json"))  # the C-FIND found the item
    item = pydicom.Dataset.from_json(next(run_dir.rglob("worklist.json")).read_text())
    expected = dicom_text(TEXT, "LO")
    assert "\\" not in expected and "\x07" not in expected
    images = list((run_dir / row.study_instance_uid).glob("*.dcm"))
    assert images
    for path in images:
        reason = pydicom.dcmread(path, stop_before_pixels=True).RequestAttributesSequence[0]
        assert reason["ReasonForTheRequestedProcedure"].VM == 1
        assert reason.ReasonForTheRequestedProcedure == expected
    assert item["ReasonForTheRequestedProcedure"].VM == 1 and item.ReasonForTheRequestedProcedure == expected
