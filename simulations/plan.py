"""The patient plan: everything a patient story decides before its first step, as one frozen value.

:func:`plan_patient` is the one planning function (exam, selection, patient, indication, order with its
identity set — MPPS UID and PPS ID included — and the seeds of what later steps draw). It reads the
catalog and nothing else: the same inputs (run seed, identifier basis, patient index, planning time,
options) give the same plan. The plan is JSON (:meth:`PatientPlan.to_json`), kept on the patient's row,
so a redelivered task (scale-out) redoes exactly the story it was given, not a new one.

The exam is chosen first (weights are real department volumes) and the patient is then generated to
satisfy its constraints, unless the scenario pins sex or age.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from cattrs.preconf.json import make_converter

from exams.errors import CatalogLookupError
from exams.factory import ExamFactory, Selection
from exams.vocabulary import generate_indication
from generators.identity import mint_order
from generators.patients import generate_patient
from generators.terms import CareSetting, Priority, Sex
from generators.types import ExamInfo, Indication, Order, Patient
from simulations.steps import OrderSpec, demographic_conflict

# Share of orders by care setting when a step asks for "any" setting (a general hospital's mix).
SETTING_SHARE = {CareSetting.OUTPATIENT: 60, CareSetting.INPATIENT: 25, CareSetting.EMERGENCY: 15}

_json = make_converter()


class PlanError(ValueError):
    """The order step cannot be planned for this patient (catalog lookup, constraints); the patient fails."""


@dataclass(frozen=True)
class PlanInputs:
    """What a plan is made from besides the order step; all of it recorded by the run."""

    run_seed: int
    ids_basis: str  # the run's id (identifiers unique per run), or its seed with replay_ids
    index: int  # 0-based patient index
    now: dt.datetime  # the planning time: order, schedule and the patient's age follow from it
    mrn_format: str = "MRN{n:07d}"
    facility: str = "YEETER_HOSP"
    station_ae_title: str = "MODALITY1"


@dataclass(frozen=True)
class PatientPlan:
    index: int
    planned_at: dt.datetime
    order: Order  # patient, exam, indication, setting, priority, identity set, MPPS UID and PPS ID
    strategy: str  # how the exam was chosen: exam_id, cpt_code or weighted_random
    candidates: tuple[str, ...]
    candidate_count: int
    pixel_seed: int  # the study's pixels and UIDs
    story_seed: int  # what later steps draw (the report's radiologist and wording)
    ids_seed: int  # message control IDs and transaction UIDs

    @property
    def number(self) -> int:
        """The patient's number as people see it (from 1)."""
        return self.index + 1

    @property
    def exam(self) -> ExamInfo:
        return self.order.exam

    def ids(self, purpose: str) -> random.Random:
        """The stream of identifiers for ``purpose`` (a message's control ID, a commitment's transaction UID):
        its own per purpose, so a step redone draws the same identifiers and two steps never share one."""
        return random.Random(f"{self.ids_seed}/{purpose}")

    def story_rng(self) -> random.Random:
        return random.Random(self.story_seed)

    def to_json(self) -> dict[str, Any]:
        return _json.unstructure(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PatientPlan:
        return _json.structure(data, cls)


def select_exam(spec: OrderSpec, rng: random.Random, *, seed: int) -> Selection:
    """EXAMGEN-4.0 priorities: explicit exam id, then CPT code, then weighted random with the step's filters."""
    factory = ExamFactory(rng, seed=seed)
    if spec.exam_id:
        return factory.select(exam_id=spec.exam_id)
    if spec.cpt_code:
        return factory.select(cpt_code=spec.cpt_code)
    return factory.select(filters=spec.filters)


def _indication(spec: OrderSpec, exam: ExamInfo, rng: random.Random, patient: Patient) -> Indication:
    if isinstance(spec.indication, dict):
        return Indication(text=spec.indication["text"], icd10=spec.indication["icd10"])
    if isinstance(spec.indication, str):
        # Free text without a code: R69 "Illness, unspecified" is the honest ICD-10-CM code for it.
        return Indication(text=spec.indication, icd10="R69")
    return generate_indication(exam, rng, patient)


def _setting(spec: OrderSpec, exam: ExamInfo, rng: random.Random) -> CareSetting:
    if spec.setting and spec.setting != "any":
        return CareSetting(spec.setting)
    choices = [s for s in SETTING_SHARE if s in exam.care_settings] or list(exam.care_settings)
    if spec.setting == "any":
        return rng.choices(choices, weights=[SETTING_SHARE.get(s, 1) for s in choices])[0]
    return CareSetting.OUTPATIENT if CareSetting.OUTPATIENT in choices else choices[0]


def _guard(exam: ExamInfo, *, sex: Sex | str | None, age: int | None) -> None:
    conflict = demographic_conflict(exam, sex=Sex(sex).value if sex else None, age=age)
    if conflict:
        raise PlanError(conflict[1][0].upper() + conflict[1][1:])


def plan_patient(spec: OrderSpec, inputs: PlanInputs) -> PatientPlan:
    """The plan of patient ``inputs.index`` (see the module docstring); :class:`PlanError` when it cannot be
    made. Draws, in order, from the patient's stream ``"<seed>/<index>"``: the exam, the patient, the
    indication, the setting, the order, then the seeds of the pixels and of the story."""
    rng = random.Random(f"{inputs.run_seed}/{inputs.index}")
    ids = random.Random(f"{inputs.ids_basis}/{inputs.index}/ids")
    try:
        selection = select_exam(spec, rng, seed=inputs.run_seed)
    except CatalogLookupError as exc:
        raise PlanError(str(exc.message)) from exc
    exam = selection.exam.to_info()
    pinned_sex = Sex(spec.sex) if spec.sex else None
    _guard(exam, sex=pinned_sex, age=spec.age)
    patient = generate_patient(
        rng, today=inputs.now.date(), sex=pinned_sex or exam.required_sex,
        min_age=spec.age if spec.age is not None else exam.min_age,
        max_age=spec.age if spec.age is not None else exam.max_age,
        mrn_format=inputs.mrn_format, issuer=inputs.facility)
    _guard(exam, sex=patient.sex, age=patient.age)
    indication = _indication(spec, exam, rng, patient)
    setting = _setting(spec, exam, rng)
    try:
        order = mint_order(exam=exam, patient=patient, indication=indication, rng=rng, now=inputs.now,
                           setting=setting, priority=Priority[spec.priority] if spec.priority else None,
                           station_ae_title=spec.station_ae_title or inputs.station_ae_title,
                           facility=inputs.facility, ids=ids)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    return PatientPlan(index=inputs.index, planned_at=inputs.now, order=order, strategy=selection.strategy,
                       candidates=tuple(selection.candidates), candidate_count=selection.candidate_count,
                       pixel_seed=rng.getrandbits(63), story_seed=rng.getrandbits(63),
                       ids_seed=ids.getrandbits(63))
