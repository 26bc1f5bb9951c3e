from __future__ import annotations

import pytest

from simulations.steps import ScenarioError, StepType, check_catalog_references, parse_steps


def _problems(steps) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_steps(steps)
    return err.value.problems


def test_it_parses_the_three_selection_forms_of_the_spec():
    steps = parse_steps([
        {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO",
         "indication": "Right knee pain, evaluate for meniscal tear", "wait_after": 0},
        {"step_type": "SEND_HL7"},
    ])
    assert steps[0].type == StepType.GENERATE_HL7 and steps[0].selects_by == "exam_id"
    assert parse_steps([{"step_type": "GENERATE_HL7", "cpt_code": "73721"}])[0].selects_by == "cpt_code"
    random_step = parse_steps([{"step_type": "GENERATE_HL7", "modality": "CT", "setting": "emergency",
                                "wait_after": 0}])[0]
    assert random_step.selects_by == "weighted_random" and random_step.params == {"modality": "CT",
                                                                                  "setting": "emergency"}


def test_dicom_before_hl7_gives_the_specs_message():
    problems = _problems([{"step_type": "GENERATE_DICOM"}, {"step_type": "GENERATE_HL7", "modality": "CT"}])
    assert problems == ["step 1 (GENERATE_DICOM): DICOM generation requires ExamSpec in run_context. Ensure a "
                        "GENERATE_HL7 step runs before GENERATE_DICOM."]


def test_the_old_template_format_is_refused_with_an_explanation():
    problems = _problems([{"step_type": "GENERATE_HL7", "template": "orm_radiology_template.txt", "wait_after": 0}])
    assert len(problems) == 1
    assert problems[0].startswith("step 1: field template: the template-based step format is gone")
    assert '"exam_id"' in problems[0] and '"cpt_code"' in problems[0]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"step_type": "FAX_IT"}], "step 1: field step_type: unknown step type 'FAX_IT'"),
        ([{"step_type": "GENERATE_HL7", "modality": "XR"}], "step 1 (GENERATE_HL7): field modality: unknown modality"),
        ([{"step_type": "GENERATE_HL7", "exam": "x"}], "step 1 (GENERATE_HL7): field exam: not a field of GENERATE_HL7"),
        ([{"step_type": "GENERATE_HL7", "wait_after": "soon"}], "field wait_after: must be a number"),
        ([{"step_type": "GENERATE_HL7", "wait_after": -1}], "field wait_after: must be between 0 and 86400"),
        ([{"step_type": "GENERATE_HL7"}, {"step_type": "MPPS_COMPLETED"}],
         "step 2 (MPPS_COMPLETED): MPPS_COMPLETED sets the step MPPS_IN_PROGRESS created"),
        ([{"step_type": "GENERATE_HL7"}, {"step_type": "GENERATE_DICOM"}, {"step_type": "STORAGE_COMMIT"}],
         "step 3 (STORAGE_COMMIT): Storage commitment asks about instances sent"),
        ([{"step_type": "GENERATE_HL7"}, {"step_type": "GENERATE_HL7"}], "only one GENERATE_HL7 step"),
        ([{"step_type": "GENERATE_HL7"}, {"step_type": "MPPS_IN_PROGRESS"}, {"step_type": "MPPS_COMPLETED"}],
         "step 3 (MPPS_COMPLETED): a COMPLETED MPPS lists the series performed"),
        ([{"step_type": "GENERATE_HL7"}, {"step_type": "MPPS_IN_PROGRESS"},
          {"step_type": "MPPS_COMPLETED", "status": "DONE"}], "field status: use COMPLETED or DISCONTINUED"),
        ([{"step_type": "WAIT", "seconds": True}], "field seconds: must be a number, got True"),
        ("GENERATE_HL7", "steps must be a list"),
        ([], "the scenario has no steps"),
        ([42], "step 1: must be an object"),
    ],
)
def test_it_names_the_step_and_field_of_each_problem(steps, expected):
    assert any(expected in p for p in _problems(steps)), _problems(steps)


@pytest.mark.django_db
def test_catalog_references_are_checked_against_the_catalog(catalog):
    steps = parse_steps([{"step_type": "GENERATE_HL7", "exam_id": "MR-NOPE"}])
    assert check_catalog_references(steps) == ["step 1 (GENERATE_HL7): field exam_id: No exam with id 'MR-NOPE' in "
                                               "the catalog."]
    steps = parse_steps([{"step_type": "GENERATE_HL7", "cpt_code": "99999"}])
    assert "field cpt_code: No active exam has CPT code '99999'" in check_catalog_references(steps)[0]
    steps = parse_steps([{"step_type": "GENERATE_HL7", "modality": "MG", "sex": "M"}])
    assert check_catalog_references(steps) == ["step 1 (GENERATE_HL7): no active exam in the catalog matches "
                                               "modality=MG, setting=outpatient, patient_sex=M."]
    steps = parse_steps([{"step_type": "GENERATE_HL7", "exam_id": "MG-SCREEN-BILAT", "sex": "M"}])
    assert "requires sex=F" in check_catalog_references(steps)[0]
    steps = parse_steps([{"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"}])
    assert check_catalog_references(steps) == []
