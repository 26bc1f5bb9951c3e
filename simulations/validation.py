"""What a run may be, checked before anything runs: the scenario against the catalog, the endpoints its steps
need (built-in receivers standing in for the kinds nobody named) and the limits of ``settings.LIMITS``.
One validation for the API, the page, the socket and the CLI."""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.db import connection

from simulations.endpoints import EndpointSet
from simulations.models import Run
from simulations.steps import STEP_ENDPOINT_KIND, OrderSpec, ScenarioError, Step, StepType, demographic_conflict, parse_steps


_KIND_LABEL = {"hl7": "HL7 (MLLP)", "storage": "DICOM storage", "mwl": "worklist", "mpps": "MPPS",
               "commitment": "storage commitment"}


_KIND_FLAG = {"hl7": "--hl7 HOST:PORT", "storage": "--pacs AET@HOST:PORT", "mwl": "--worklist AET@HOST:PORT",
              "mpps": "--mpps AET@HOST:PORT", "commitment": "--pacs AET@HOST:PORT"}


BUILTIN_KINDS = ("hl7", "storage", "mwl", "mpps")


def missing_kinds(endpoints: EndpointSet) -> tuple[str, ...]:
    """Endpoint kinds nobody named: the built-in receivers serve them (commitment goes with storage,
    and a worklist folder or external MWL SCP means the worklist is not ours to serve)."""
    missing = [k for k in BUILTIN_KINDS if endpoints.get(k) is None]
    if "mwl" in missing and endpoints.get("worklist_folder") is not None:
        missing.remove("mwl")
    return tuple(missing)


def check_endpoints(steps: list[Step], endpoints: EndpointSet, *, send: bool,
                    builtin_kinds: tuple[str, ...] = ()) -> list[str]:
    """Every network step has somewhere to go (when sending), and named endpoints exist with the right kind."""
    problems: list[str] = []
    if builtin_kinds:
        endpoints = fill_builtin(endpoints, _builtin_stand_ins(), builtin_kinds)
    for step in steps:
        kind = STEP_ENDPOINT_KIND[step.type]
        if kind is None:
            continue
        name = step.endpoint
        if name:
            entry = endpoints.named.get(name)
            allowed = {kind} | ({"worklist_folder"} if step.type == StepType.SEND_DMWL else set()) \
                | ({"storage"} if step.type == StepType.STORAGE_COMMIT else set())
            if entry is None:
                problems.append(f"{step.label}: field endpoint: no endpoint named {name!r}.")
            elif entry[0] not in allowed:
                problems.append(f"{step.label}: field endpoint: {name!r} is a {entry[0]} endpoint; this step needs "
                                f"a {_KIND_LABEL[kind]} endpoint.")
            continue
        if not send:
            continue
        if step.type == StepType.SEND_DMWL:
            if not (endpoints.builtin_worklist or endpoints.get("worklist_folder") or endpoints.get("mwl")):
                problems.append(f"{step.label}: nowhere to publish or query the worklist: give a worklist folder "
                                "(--worklist-dir) or a worklist SCP (--worklist AET@HOST:PORT).")
        elif step.type == StepType.STORAGE_COMMIT:
            if not (endpoints.get("commitment") or endpoints.get("storage")):
                problems.append(f"{step.label}: no storage commitment endpoint: pass {_KIND_FLAG[kind]}.")
        elif endpoints.get(kind) is None:
            problems.append(f"{step.label}: no {_KIND_LABEL[kind]} endpoint to send to: name one in the step's "
                            f"\"endpoint\" field, attach one to the scenario, or pass {_KIND_FLAG[kind]}.")
    return problems


def _builtin_stand_ins() -> EndpointSet:
    """Stand-ins for the receivers a run will start, so validation knows those kinds are served."""
    from simulations.endpoints import HL7Target
    from simulations.transport.dimse.common import DicomPeer

    peer = DicomPeer("127.0.0.1", 1, "BUILTIN")
    return EndpointSet(by_kind={"hl7": HL7Target("127.0.0.1", 1), "storage": peer, "commitment": peer,
                                "mwl": peer, "mpps": peer})


def scenario_validate(*, steps_json, endpoints: EndpointSet | None = None, send: bool = True,
                      builtin_kinds: tuple[str, ...] = ()) -> list[Step]:
    """The whole scenario checked before anything runs; :class:`ScenarioError` lists every problem."""
    steps = parse_steps(steps_json)
    problems = check_catalog_references(steps)
    if endpoints is not None:
        problems += check_endpoints(steps, endpoints, send=send, builtin_kinds=builtin_kinds)
    if problems:
        raise ScenarioError(problems)
    return steps


class LimitExceeded(Exception):
    """A run start asks for more than a limit of ``settings.LIMITS`` allows (README "Limits").

    ``in_flight`` limits are about the moment (HTTP 429: try again when a run has ended); the others
    about the request itself (HTTP 400: ask for less).
    """

    def __init__(self, message: str, *, limit: str, value: int, setting: str, in_flight: bool = False) -> None:
        super().__init__(message)
        self.message, self.limit, self.value, self.setting, self.in_flight = message, limit, value, setting, in_flight


# settings.LIMITS key -> (environment variable, what it limits), for the messages.
LIMIT_SETTINGS = {
    "PATIENTS_PER_RUN": ("YEETER_MAX_PATIENTS_PER_RUN", "patients per run"),
    "RUNS_IN_FLIGHT_PER_OWNER": ("YEETER_MAX_RUNS_PER_OWNER", "runs in flight per owner"),
    "RUNS_IN_FLIGHT": ("YEETER_MAX_RUNS", "runs in flight on this server"),
    "INSTANCES_PER_SERIES": ("YEETER_MAX_INSTANCES_PER_SERIES", "instances per series"),
}


IN_FLIGHT = (Run.Status.PENDING, Run.Status.RUNNING)


def _limit(name: str) -> int:
    return int(settings.LIMITS[name])


def _over(name: str, asked: str, *, in_flight: bool = False) -> LimitExceeded:
    variable, what = LIMIT_SETTINGS[name]
    value = _limit(name)
    return LimitExceeded(f"{asked}; the limit is {value} {what} ({variable}).", limit=name.lower(), value=value,
                         setting=variable, in_flight=in_flight)


def check_run_size(*, patients: int, max_instances_per_series: int | None) -> None:
    """Patients per run and instances per series within ``settings.LIMITS`` (:class:`LimitExceeded`)."""
    if patients > _limit("PATIENTS_PER_RUN"):
        raise _over("PATIENTS_PER_RUN", f"patients: {patients} asked")
    if max_instances_per_series is not None and max_instances_per_series > _limit("INSTANCES_PER_SERIES"):
        raise _over("INSTANCES_PER_SERIES", f"max_instances_per_series: {max_instances_per_series} asked")


def _check_runs_in_flight(owner: dict) -> None:
    """Runs pending or running, for this owner and in total, below the limits. Called inside the
    creating transaction, serialised: SQLite's IMMEDIATE transactions already hold the write lock,
    PostgreSQL takes a transaction-scoped advisory lock, so two concurrent starts cannot both pass."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x59454554])  # "YEET"
    in_flight = Run.objects.filter(status__in=IN_FLIGHT)
    if in_flight.count() >= _limit("RUNS_IN_FLIGHT"):
        raise _over("RUNS_IN_FLIGHT", "Too many runs in flight: wait for one to finish or cancel one",
                    in_flight=True)
    mine = {k: v for k, v in owner.items() if v is not None}
    if mine and in_flight.filter(**mine).count() >= _limit("RUNS_IN_FLIGHT_PER_OWNER"):
        raise _over("RUNS_IN_FLIGHT_PER_OWNER", "You have too many runs in flight: wait for one to finish or "
                    "cancel one", in_flight=True)


def fill_builtin(endpoints: EndpointSet, builtin: EndpointSet, kinds: tuple[str, ...]) -> EndpointSet:
    """``endpoints`` with the built-in receivers' targets for ``kinds`` (storage brings commitment)."""
    for kind in kinds:
        endpoints = endpoints.with_kind(kind, builtin.get(kind))
        if kind == "storage" and endpoints.get("commitment") is None:
            endpoints = endpoints.with_kind("commitment", builtin.get("commitment"))
        if kind == "storage" and endpoints.get("query") is None:  # VERIFY_PACS asks the built-in query SCP
            endpoints = endpoints.with_kind("query", builtin.get("query"))
    if "mwl" in kinds:
        endpoints = dataclasses.replace(endpoints, builtin_worklist=True)
    return endpoints


def check_catalog_references(steps: list[Step]) -> list[str]:
    """Resolve exam ids, CPT codes and filters against the catalog (a few queries per GENERATE_HL7 step)."""
    from exams.errors import CatalogLookupError
    from exams.factory import ExamFactory, InvalidFilter
    from exams.models import ExamSpec

    problems: list[str] = []
    factory = ExamFactory()
    for step in steps:
        if step.type != StepType.GENERATE_HL7:
            continue
        spec: OrderSpec = step.spec
        try:
            if spec.exam_id or spec.cpt_code:
                exam = (factory.get_exam_by_id(spec.exam_id) if spec.exam_id
                        else factory.get_exam_by_cpt_code(spec.cpt_code))
                conflict = demographic_conflict(exam, sex=spec.sex, age=spec.age, who="the step's pinned patient")
                if conflict:
                    problems.append(f"{step.label}: field {conflict[0]}: {conflict[1]}.")
            elif not ExamSpec.objects.filter(spec.filters.q(), weight__gt=0).exists():
                shown = ", ".join(f"{k}={v}" for k, v in spec.filters.as_dict().items()) or "no filters"
                problems.append(f"{step.label}: no active exam in the catalog matches {shown}.")
        except InvalidFilter as exc:
            problems.append(f"{step.label}: field {exc.field}: {exc.message}")
        except CatalogLookupError as exc:
            field_name = "exam_id" if spec.exam_id else "cpt_code"
            problems.append(f"{step.label}: field {field_name}: {exc.message}")
    return problems
