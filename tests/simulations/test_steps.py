from __future__ import annotations

import pytest

from exams.factory import ExamFilters
from generators.terms import Modality
from simulations.steps import (
    CommitSpec,
    MppsSetSpec,
    OrderSpec,
    ScenarioError,
    SendSpec,
    StepType,
    StoreSpec,
    VerifyPacsSpec,
    WaitSpec,
    WorklistSpec,
    parse_steps,
)
from simulations.validation import check_catalog_references


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
    order = steps[0].spec
    assert steps[0].type == StepType.GENERATE_HL7 and isinstance(order, OrderSpec)
    assert order.exam_id == "MR-KNEE-RIGHT-WO" and order.indication.startswith("Right knee pain")
    assert steps[1].spec == SendSpec(endpoint=None)
    assert parse_steps([{"step_type": "GENERATE_HL7", "cpt_code": "73721"}])[0].spec.cpt_code == "73721"
    random_step = parse_steps([{"step_type": "GENERATE_HL7", "modality": "CT", "setting": "emergency",
                                "wait_after": 0}])[0]
    assert random_step.params == {"modality": "CT", "setting": "emergency"}
    assert random_step.spec.filters == ExamFilters(modality="CT", setting="emergency")
    # No setting: the default (outpatient) filters the draw; "any" filters nothing and draws by share.
    assert parse_steps([{"step_type": "GENERATE_HL7"}])[0].spec.filters.setting == "outpatient"
    anywhere = parse_steps([{"step_type": "GENERATE_HL7", "setting": "any", "sex": "F", "age": 40}])[0].spec
    assert anywhere.filters == ExamFilters(patient_sex="F", patient_age=40) and anywhere.setting == "any"


def test_every_step_type_has_a_typed_value_with_its_defaults():
    steps = parse_steps([
        {"step_type": "GENERATE_HL7", "exam_id": "CT-HEAD-WO"},
        {"step_type": "SEND_DMWL", "verify": False},
        {"step_type": "MPPS_IN_PROGRESS", "endpoint": "pacs-mpps"},
        {"step_type": "GENERATE_DICOM", "max_instances_per_series": 3, "key_images": True},
        {"step_type": "SEND_DICOM", "associations": 2},
        {"step_type": "STORAGE_COMMIT", "timeout": 5, "required": True},
        {"step_type": "VERIFY_PACS", "qido": "http://127.0.0.1:8042/dicom-web"},
        {"step_type": "MPPS_COMPLETED", "status": "DISCONTINUED"},
        {"step_type": "WAIT", "seconds": 2},
    ])
    specs = [s.spec for s in steps]
    assert specs[1] == WorklistSpec(verify=False)
    assert specs[2] == SendSpec(endpoint="pacs-mpps") and steps[2].endpoint == "pacs-mpps"
    assert specs[3].max_instances_per_series == 3 and specs[3].transfer_syntax is None
    assert specs[3].documents.key_images and specs[3].documents.dose_sr and not specs[3].documents.pdf_report
    assert specs[4] == StoreSpec(associations=2)
    assert specs[5] == CommitSpec(timeout=5, required=True)
    assert specs[6] == VerifyPacsSpec(qido="http://127.0.0.1:8042/dicom-web")
    assert specs[7] == MppsSetSpec(status="DISCONTINUED") and specs[8] == WaitSpec(seconds=2)


def test_an_invalid_filter_is_named_once():
    problems = _problems([{"step_type": "GENERATE_HL7", "modality": "XX", "body_part": "ELBOW"}])
    assert problems == ["step 1 (GENERATE_HL7): field modality: unknown modality 'XX'; use one of "
                        + ", ".join(m.value for m in Modality) + "."]
    problems = _problems([{"step_type": "GENERATE_HL7", "sex": "X"}])
    assert len(problems) == 1 and problems[0].startswith("step 1 (GENERATE_HL7): field sex:")


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
