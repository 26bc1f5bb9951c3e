"""The patient plan: one pure planning function, one frozen JSON value; and the typed run counters."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from simulations.plan import PatientPlan, PlanError, PlanInputs, plan_patient
from simulations.stats import RunStats, run_summary
from simulations.steps import parse_steps

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 2, 9, 30)


def _spec(**fields):
    return parse_steps([{"step_type": "GENERATE_HL7", **fields}])[0].spec


def _inputs(index: int = 0, *, basis: str = "run-a", seed: int = 7) -> PlanInputs:
    return PlanInputs(run_seed=seed, ids_basis=basis, index=index, now=NOW)


def test_the_same_inputs_give_the_same_plan_and_it_survives_json(catalog):
    spec = _spec(modality="MR", setting="any")
    plan = plan_patient(spec, _inputs(3))
    assert plan_patient(spec, _inputs(3)) == plan
    assert PatientPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    order = plan.order
    assert order.exam.modality.value == "MR" and order.mpps_uid and order.pps_id
    assert plan.number == 4 and plan.planned_at == NOW and plan.strategy == "weighted_random"
    other = plan_patient(spec, _inputs(4))
    assert other.order.accession_number != order.accession_number
    assert other.order.study_instance_uid != order.study_instance_uid


def test_identifiers_follow_the_basis_and_everything_else_the_seed(catalog):
    spec = _spec(exam_id="MR-KNEE-RIGHT-WO")
    a, b = plan_patient(spec, _inputs(0, basis="run-a")), plan_patient(spec, _inputs(0, basis="run-b"))
    assert a.order.patient == b.order.patient and a.order.exam == b.order.exam and a.pixel_seed == b.pixel_seed
    assert a.order.study_instance_uid != b.order.study_instance_uid and a.order.mpps_uid != b.order.mpps_uid
    assert a.ids("commitment").random() != b.ids("commitment").random()
    assert a.ids("msh10/A").random() == a.ids("msh10/A").random() != a.ids("msh10/O").random()


def test_pins_are_kept_and_a_pin_the_exam_refuses_is_a_plan_error(catalog):
    plan = plan_patient(_spec(exam_id="MR-KNEE-RIGHT-WO", sex="F", age=44, priority="STAT",
                              indication={"text": "Knee locking", "icd10": "M23.91"}), _inputs())
    order = plan.order
    assert order.patient.sex.value == "F" and order.patient.age == 44 and order.priority.name == "STAT"
    assert (order.indication.text, order.indication.icd10) == ("Knee locking", "M23.91")
    free_text = plan_patient(_spec(exam_id="MR-KNEE-RIGHT-WO", indication="Pain"), _inputs()).order.indication
    assert (free_text.text, free_text.icd10) == ("Pain", "R69")  # no code given: "illness, unspecified"
    female_only = next(e for e in catalog["exams"] if e.get("required_sex") == "F")
    with pytest.raises(PlanError, match=rf"^Exam {female_only['id']} requires sex=F, but the patient is M$"):
        plan_patient(_spec(exam_id=female_only["id"], sex="M"), _inputs())
    with pytest.raises(PlanError, match="^No exam with id 'NO-SUCH-EXAM' in the catalog"):
        plan_patient(_spec(exam_id="NO-SUCH-EXAM"), _inputs())


def test_run_stats_add_up_and_round_trip():
    a = RunStats(hl7_sent=3, acks=Counter({"AA": 3}), instances_generated=10, bytes_generated=2_000_000)
    a.step_seconds["SEND_DICOM"] += 1.5
    b = RunStats.from_json(json.loads(json.dumps(a.to_json())))
    assert b == a
    total = RunStats().add(a).add(b)
    assert total.hl7_sent == 6 and total.acks == {"AA": 6} and total.step_seconds == {"SEND_DICOM": 3.0}
    summary = run_summary(total, patients=2, passed=2, failed=0, cancelled=0, elapsed=2.0)
    assert summary["megabytes"] == 4.0 and summary["megabytes_per_second"] == 2.0
    assert summary["patients_per_minute"] == 60.0 and summary["acks"] == {"AA": 6}
    assert RunStats.from_json(None) == RunStats()
