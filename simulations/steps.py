"""The scenario step format (EXAMGEN-4.0) and its validation.

A scenario is a JSON list of steps such as::

    {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO", "indication": "...", "wait_after": 0}

:func:`parse_steps` checks the shape of every step (types, fields, order dependencies) without the
database; :func:`simulations.validation.check_catalog_references` then resolves exam ids, CPT codes and
filters against the catalog. Every problem names the step (1-based, with its type) and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepType(StrEnum):
    REGISTER_PATIENT = "REGISTER_PATIENT"  # ADT^A04 / ADT^A01
    GENERATE_HL7 = "GENERATE_HL7"  # bind the exam, build ORM^O01 NW
    SEND_HL7 = "SEND_HL7"  # send the ORM over MLLP
    SEND_DMWL = "SEND_DMWL"  # publish the worklist item, verify by C-FIND
    MPPS_IN_PROGRESS = "MPPS_IN_PROGRESS"
    GENERATE_DICOM = "GENERATE_DICOM"
    SEND_DICOM = "SEND_DICOM"
    STORAGE_COMMIT = "STORAGE_COMMIT"
    VERIFY_PACS = "VERIFY_PACS"  # C-FIND the PACS for the study, compare with what was sent
    MPPS_COMPLETED = "MPPS_COMPLETED"
    SEND_REPORT = "SEND_REPORT"  # ORU^R01
    CANCEL_ORDER = "CANCEL_ORDER"  # ORM^O01 CA
    WAIT = "WAIT"


class EndpointKind(StrEnum):
    """What a run talks to: the keys of ``Run.endpoints`` and of ``Endpoint.kind``."""

    HL7 = "hl7"
    STORAGE = "storage"
    MWL = "mwl"
    MPPS = "mpps"
    COMMITMENT = "commitment"
    QUERY = "query"  # the PACS's C-FIND service (VERIFY_PACS); the storage peer when none is known
    WORKLIST_FOLDER = "worklist_folder"


# Which endpoint kind each network step talks to (None: no network).
STEP_ENDPOINT_KIND: dict[StepType, EndpointKind | None] = {
    StepType.REGISTER_PATIENT: EndpointKind.HL7,
    StepType.GENERATE_HL7: None,
    StepType.SEND_HL7: EndpointKind.HL7,
    StepType.SEND_DMWL: EndpointKind.MWL,
    StepType.MPPS_IN_PROGRESS: EndpointKind.MPPS,
    StepType.GENERATE_DICOM: None,
    StepType.SEND_DICOM: EndpointKind.STORAGE,
    StepType.STORAGE_COMMIT: EndpointKind.COMMITMENT,
    StepType.VERIFY_PACS: EndpointKind.STORAGE,  # the PACS's query service: a "query" target when one is known
    StepType.MPPS_COMPLETED: EndpointKind.MPPS,
    StepType.SEND_REPORT: EndpointKind.HL7,
    StepType.CANCEL_ORDER: EndpointKind.HL7,
    StepType.WAIT: None,
}

_COMMON = {"step_type": str, "wait_after": (int, float), "name": str}
_SELECT = {"exam_id": str, "cpt_code": str, "modality": str, "body_part": str, "setting": str, "laterality": str}
_FIELDS: dict[StepType, dict[str, Any]] = {
    StepType.REGISTER_PATIENT: {"endpoint": str},
    StepType.GENERATE_HL7: {**_SELECT, "indication": (str, dict), "priority": str, "station_ae_title": str,
                            "sex": str, "age": int},
    StepType.SEND_HL7: {"endpoint": str},
    StepType.SEND_DMWL: {"endpoint": str, "verify": bool},
    StepType.MPPS_IN_PROGRESS: {"endpoint": str},
    # dose_sr (default on: the X-Ray Radiation Dose SR of a CT/DX/CR/MG study), key_images, text_report and
    # pdf_report (default off): the study's documents, sent with its images (simulations.documents)
    StepType.GENERATE_DICOM: {"max_instances_per_series": int, "transfer_syntax": str, "dose_sr": bool,
                              "key_images": bool, "text_report": bool, "pdf_report": bool},
    StepType.SEND_DICOM: {"endpoint": str, "associations": int},
    StepType.STORAGE_COMMIT: {"endpoint": str, "timeout": (int, float), "required": bool},
    StepType.VERIFY_PACS: {"endpoint": str, "qido": str},
    StepType.MPPS_COMPLETED: {"endpoint": str, "status": str},
    StepType.SEND_REPORT: {"endpoint": str},
    StepType.CANCEL_ORDER: {"endpoint": str},
    StepType.WAIT: {"seconds": (int, float)},
}

# A step needs an earlier step of one of these types; the message is what the user reads.
_REQUIRES: dict[StepType, tuple[tuple[StepType, ...], str]] = {
    StepType.GENERATE_DICOM: ((StepType.GENERATE_HL7,),
                              "DICOM generation requires ExamSpec in run_context. Ensure a GENERATE_HL7 step runs "
                              "before GENERATE_DICOM."),
    StepType.SEND_HL7: ((StepType.GENERATE_HL7,), "SEND_HL7 sends the order built by GENERATE_HL7: put a "
                                                  "GENERATE_HL7 step before it."),
    StepType.SEND_DMWL: ((StepType.GENERATE_HL7,), "The worklist entry is built from the order's ExamSpec: put a "
                                                   "GENERATE_HL7 step before SEND_DMWL."),
    StepType.MPPS_IN_PROGRESS: ((StepType.GENERATE_HL7,), "MPPS needs the order's ExamSpec: put a GENERATE_HL7 step "
                                                          "before MPPS_IN_PROGRESS."),
    StepType.SEND_DICOM: ((StepType.GENERATE_DICOM,), "SEND_DICOM sends the study GENERATE_DICOM wrote: put a "
                                                      "GENERATE_DICOM step before it."),
    StepType.STORAGE_COMMIT: ((StepType.SEND_DICOM,), "Storage commitment asks about instances sent: put a "
                                                      "SEND_DICOM step before STORAGE_COMMIT."),
    StepType.VERIFY_PACS: ((StepType.SEND_DICOM,), "VERIFY_PACS compares what the PACS holds with the study sent: "
                                                   "put a SEND_DICOM step before it."),
    StepType.MPPS_COMPLETED: ((StepType.MPPS_IN_PROGRESS,), "MPPS_COMPLETED sets the step MPPS_IN_PROGRESS created: "
                                                            "put an MPPS_IN_PROGRESS step before it."),
    StepType.SEND_REPORT: ((StepType.GENERATE_HL7,), "The report is about the order's exam: put a GENERATE_HL7 "
                                                     "step before SEND_REPORT."),
    StepType.CANCEL_ORDER: ((StepType.GENERATE_HL7,), "CANCEL_ORDER cancels the order GENERATE_HL7 built: put a "
                                                      "GENERATE_HL7 step before it."),
}

TEMPLATE_MESSAGE = ("the template-based step format is gone: steps no longer name an HL7 template. Select the exam "
                    "instead with \"exam_id\" (e.g. \"MR-KNEE-RIGHT-WO\"), \"cpt_code\" (e.g. \"73721\"), or "
                    "weighted-random filters \"modality\", \"body_part\", \"setting\", \"laterality\"; the HL7 "
                    "order, worklist entry and DICOM study are all built from that exam.")

MPPS_FINAL_STATUSES = ("COMPLETED", "DISCONTINUED")
MAX_INSTANCES_PER_SERIES = 5000  # the API's max_instances_per_series cap too
TRANSFER_SYNTAXES = ("explicit", "rle", "jpegls")


class ScenarioError(ValueError):
    """The scenario cannot run; ``problems`` names each step and field at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("The scenario is not valid: " + " ".join(problems))


@dataclass(frozen=True)
class OrderSpec:
    """GENERATE_HL7: how the exam is chosen (EXAMGEN-4.0: exam id, then CPT code, then weighted random with
    ``filters``) and what the order pins. ``filters`` is built once, here, and used by the catalog check and
    the planner alike; ``setting`` None means "the exam's default setting", "any" a draw by share."""

    exam_id: str | None = None
    cpt_code: str | None = None
    filters: Any = None  # exams.factory.ExamFilters (the patient's pinned sex/age included)
    setting: str | None = None
    sex: str | None = None
    age: int | None = None
    priority: str | None = None
    indication: str | dict | None = None
    station_ae_title: str | None = None


@dataclass(frozen=True)
class SendSpec:
    """REGISTER_PATIENT, SEND_HL7, MPPS_IN_PROGRESS, SEND_REPORT, CANCEL_ORDER: a named endpoint or the run's."""

    endpoint: str | None = None


@dataclass(frozen=True)
class WorklistSpec:
    endpoint: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class DicomSpec:
    """GENERATE_DICOM; None falls back to the run's option."""

    max_instances_per_series: int | None = None
    transfer_syntax: str | None = None
    documents: Any = None  # simulations.documents.DocumentChoice


@dataclass(frozen=True)
class StoreSpec:
    endpoint: str | None = None
    associations: int = 1


@dataclass(frozen=True)
class CommitSpec:
    endpoint: str | None = None
    timeout: float | None = None  # None: the peer's read timeout
    required: bool = False


@dataclass(frozen=True)
class VerifyPacsSpec:
    endpoint: str | None = None
    qido: str | None = None


@dataclass(frozen=True)
class MppsSetSpec:
    endpoint: str | None = None
    status: str = "COMPLETED"


@dataclass(frozen=True)
class WaitSpec:
    seconds: float = 0.0


_SPECS: dict[StepType, type] = {
    StepType.REGISTER_PATIENT: SendSpec, StepType.GENERATE_HL7: OrderSpec, StepType.SEND_HL7: SendSpec,
    StepType.SEND_DMWL: WorklistSpec, StepType.MPPS_IN_PROGRESS: SendSpec, StepType.GENERATE_DICOM: DicomSpec,
    StepType.SEND_DICOM: StoreSpec, StepType.STORAGE_COMMIT: CommitSpec, StepType.VERIFY_PACS: VerifyPacsSpec,
    StepType.MPPS_COMPLETED: MppsSetSpec, StepType.SEND_REPORT: SendSpec, StepType.CANCEL_ORDER: SendSpec,
    StepType.WAIT: WaitSpec,
}


@dataclass(frozen=True)
class Step:
    index: int  # 0-based position in the scenario
    type: StepType
    params: dict = field(default_factory=dict)  # the validated fields as given (what the page shows)
    wait_after: float = 0.0
    spec: Any = None  # the typed value of the step's fields: OrderSpec, SendSpec, DicomSpec, ...

    @property
    def label(self) -> str:
        return f"step {self.index + 1} ({self.type.value})"

    @property
    def endpoint(self) -> str | None:
        """The Endpoint row named by the step (``"endpoint"``), or None for the run's."""
        return getattr(self.spec, "endpoint", None)


def _spec(step_type: StepType, params: dict, where: str, problems: list[str]):
    """The typed value of a step whose fields passed the shape checks; an invalid filter is a problem."""
    if step_type == StepType.GENERATE_HL7:
        from exams.factory import ExamFilters, InvalidFilter

        setting = params.get("setting")
        try:
            filters = ExamFilters(modality=params.get("modality"), body_part=params.get("body_part"),
                                  setting=None if setting == "any" else setting or "outpatient",
                                  laterality=params.get("laterality"), patient_age=params.get("age"),
                                  patient_sex=params.get("sex"))
        except InvalidFilter as exc:
            field_name = {"patient_age": "age", "patient_sex": "sex"}.get(exc.field, exc.field)
            if not any(p.startswith(f"{where}: field {field_name}:") for p in problems):  # said once
                problems.append(f"{where}: field {field_name}: {exc.message}")
            return None
        return OrderSpec(exam_id=params.get("exam_id"), cpt_code=params.get("cpt_code"), filters=filters,
                         setting=setting, sex=params.get("sex"), age=params.get("age"),
                         priority=params.get("priority"), indication=params.get("indication"),
                         station_ae_title=params.get("station_ae_title"))
    if step_type == StepType.GENERATE_DICOM:
        from simulations.documents import DocumentChoice

        return DicomSpec(max_instances_per_series=params.get("max_instances_per_series"),
                         transfer_syntax=params.get("transfer_syntax"),
                         documents=DocumentChoice.from_params(params))
    known = {k: v for k, v in params.items() if k in _SPECS[step_type].__dataclass_fields__}
    return _SPECS[step_type](**known)


def _type_name(t: Any) -> str:
    names = {str: "a string", int: "a whole number", bool: "true or false", dict: "an object",
             (int, float): "a number", (str, dict): "a string or an object"}
    return names.get(t, str(t))


def _is(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) and expected is not bool and expected != (bool,):
        return False  # JSON true is not a number
    return isinstance(value, expected)


def parse_steps(raw: Any) -> list[Step]:
    """Check the shape of a scenario's steps; raises :class:`ScenarioError` listing every problem."""
    if not isinstance(raw, list):
        raise ScenarioError([f"steps must be a list of step objects, got {type(raw).__name__}."])
    if not raw:
        raise ScenarioError(["the scenario has no steps."])
    problems: list[str] = []
    steps: list[Step] = []
    seen: set[StepType] = set()
    for index, item in enumerate(raw):
        where = f"step {index + 1}"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with a step_type, got {type(item).__name__}.")
            continue
        if "template" in item:
            problems.append(f"{where}: field template: {TEMPLATE_MESSAGE}")
            continue
        raw_type = item.get("step_type")
        try:
            step_type = StepType(raw_type)
        except ValueError:
            problems.append(f"{where}: field step_type: unknown step type {raw_type!r}; use one of "
                            f"{', '.join(t.value for t in StepType)}.")
            continue
        where = f"step {index + 1} ({step_type.value})"
        allowed = {**_COMMON, **_FIELDS[step_type]}
        params: dict[str, Any] = {}
        for key, value in item.items():
            if key not in allowed:
                problems.append(f"{where}: field {key}: not a field of {step_type.value} (allowed: "
                                f"{', '.join(sorted(k for k in allowed if k != 'step_type'))}).")
            elif not _is(value, allowed[key]):
                problems.append(f"{where}: field {key}: must be {_type_name(allowed[key])}, got {value!r}.")
            elif key not in _COMMON:
                params[key] = value
        wait_after = item.get("wait_after", 0)
        if _is(wait_after, (int, float)) and not 0 <= wait_after <= 86400:
            problems.append(f"{where}: field wait_after: must be between 0 and 86400 seconds, got {wait_after}.")
        problems.extend(_check_values(where, step_type, params))
        if step_type in _REQUIRES:
            needs, message = _REQUIRES[step_type]
            if not seen.intersection(needs):
                problems.append(f"{where}: {message}")
        if (step_type == StepType.MPPS_COMPLETED and params.get("status", "COMPLETED") == "COMPLETED"
                and StepType.GENERATE_DICOM not in seen):
            problems.append(f"{where}: a COMPLETED MPPS lists the series performed (PS3.4 F.7.2.2.2): put a "
                            "GENERATE_DICOM step before it, or use \"status\": \"DISCONTINUED\".")
        if step_type == StepType.GENERATE_HL7 and StepType.GENERATE_HL7 in seen:
            problems.append(f"{where}: a patient story has one order: only one GENERATE_HL7 step is allowed.")
        seen.add(step_type)
        spec = _spec(step_type, params, where, problems)
        steps.append(Step(index, step_type, params, float(wait_after) if _is(wait_after, (int, float)) else 0.0,
                          spec))
    # A step whose type could not be read may be the order step itself: no second guess then.
    if StepType.GENERATE_HL7 not in seen and len(steps) == len(raw):
        problems.append(f"steps: no {StepType.GENERATE_HL7.value} step: every patient story is planned from its one "
                        "order (exam, patient, identity set), so a scenario needs a GENERATE_HL7 step, e.g. "
                        "{\"step_type\": \"GENERATE_HL7\", \"exam_id\": \"MR-KNEE-RIGHT-WO\"}.")
    if problems:
        raise ScenarioError(problems)
    return steps


def _check_values(where: str, step_type: StepType, params: dict) -> list[str]:
    from generators import terms

    problems: list[str] = []
    if "setting" in params and params["setting"] not in {s.value for s in terms.CareSetting} | {"any"}:
        problems.append(f"{where}: field setting: use outpatient, inpatient, emergency or any, got "
                        f"{params['setting']!r}.")
    if "sex" in params and params["sex"] not in {"F", "M"}:
        problems.append(f"{where}: field sex: use F or M, got {params['sex']!r}.")
    if "age" in params and not 0 <= params["age"] <= 120:
        problems.append(f"{where}: field age: must be from 0 to 120, got {params['age']}.")
    if "priority" in params and params["priority"] not in {p.name for p in terms.Priority}:
        problems.append(f"{where}: field priority: use STAT, ASAP or ROUTINE, got {params['priority']!r}.")
    if isinstance(params.get("indication"), dict):
        ind = params["indication"]
        if set(ind) != {"text", "icd10"} or not all(isinstance(v, str) and v for v in ind.values()):
            problems.append(f"{where}: field indication: an object needs exactly \"text\" and \"icd10\" strings.")
    if "status" in params and params["status"] not in MPPS_FINAL_STATUSES:
        problems.append(f"{where}: field status: use COMPLETED or DISCONTINUED, got {params['status']!r}.")
    if "transfer_syntax" in params and params["transfer_syntax"] not in TRANSFER_SYNTAXES:
        problems.append(f"{where}: field transfer_syntax: use one of {', '.join(TRANSFER_SYNTAXES)}, got "
                        f"{params['transfer_syntax']!r}.")
    for key, low, high in (("max_instances_per_series", 1, MAX_INSTANCES_PER_SERIES), ("associations", 1, 16),
                           ("seconds", 0, 86400), ("timeout", 1, 3600)):
        if key in params and not low <= params[key] <= high:
            problems.append(f"{where}: field {key}: must be from {low} to {high}, got {params[key]}.")
    if "qido" in params:
        from simulations.transport.qido import check_base_url

        problem = check_base_url(params["qido"])
        if problem:
            problems.append(f"{where}: field qido: {problem}.")
    if "station_ae_title" in params and not 0 < len(params["station_ae_title"]) <= 16:
        problems.append(f"{where}: field station_ae_title: an AE title has 1 to 16 characters.")
    return problems


def demographic_conflict(exam, *, sex: str | None, age: int | None, who: str = "the patient") -> tuple[str, str] | None:
    """The spec's validation guard, one copy for the catalog check and the planner: ``(field, sentence)``
    when ``sex`` or ``age`` break the constraints of ``exam`` (an ExamSpec row or an ExamInfo)."""
    required = exam.required_sex or None
    if sex is not None and required is not None and str(sex) != str(required):
        return "sex", f"exam {exam.id} requires sex={required}, but {who} is {sex}"
    if age is not None and ((exam.min_age is not None and age < exam.min_age)
                            or (exam.max_age is not None and age > exam.max_age)):
        return "age", (f"exam {exam.id} accepts ages {exam.min_age or 0}-{exam.max_age if exam.max_age is not None else 'any'}, "
                       f"but {who} is {age}")
    return None


def order_step(steps: list[Step]) -> Step:
    """The scenario's one GENERATE_HL7 step (parse_steps refuses a scenario without it)."""
    for step in steps:
        if step.type == StepType.GENERATE_HL7:
            return step
    raise ScenarioError(["steps: no GENERATE_HL7 step to plan the order from."])
