"""Run workflows (HackSoft services): create a validated run, execute it, cancel it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from simulations.endpoints import CommitListen, EndpointSet
from simulations.events import EventRecorder
from simulations.models import Run, Scenario
from simulations.receivers import BuiltinReceivers
from simulations.runner import RunOptions, SimulationRunner
from simulations.steps import STEP_ENDPOINT_KIND, ScenarioError, Step, StepType, check_catalog_references, parse_steps

logger = logging.getLogger(__name__)

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
        name = step.params.get("endpoint")
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


@transaction.atomic
def run_create(*, steps_json, patients: int, concurrency: int, endpoints: EndpointSet, options: RunOptions | None,
               scenario: Scenario | None = None, seed: int | None = None, arrival: str = "all_at_once",
               rate_per_hour: float | None = None) -> Run:
    """Validate and record a run (status pending). ``options.output_dir`` defaults to the data dir."""
    scenario_validate(steps_json=steps_json, endpoints=endpoints, send=options.send if options else True,
                      builtin_kinds=options.builtin_kinds if options else ())
    if patients < 1:
        raise ScenarioError(["patients: a run needs at least one patient."])
    if concurrency < 1:
        raise ScenarioError(["concurrency: must be at least 1."])
    if arrival == Scenario.Arrival.POISSON and not rate_per_hour:
        raise ScenarioError(["rate_per_hour: Poisson arrivals need a rate (patients per hour)."])
    run = Run(scenario=scenario, scenario_name=scenario.name if scenario else "", steps=steps_json,
              patient_count=patients, concurrency=concurrency, arrival=arrival, rate_per_hour=rate_per_hour,
              seed=seed if seed is not None else secrets.randbits(48), endpoints=endpoints.to_json())
    options = options or RunOptions()
    if options.output_dir is None:
        options = dataclasses.replace(options, output_dir=Path(settings.DATA_DIR) / "runs" / str(run.id))
    run.output_dir = str(options.output_dir)
    run.options = options.to_json()
    run.save()
    return run


def _start_receivers(options: RunOptions) -> BuiltinReceivers:
    receivers = BuiltinReceivers(storage_dir=Path(settings.DATA_DIR) / "received",
                                 host=settings.YEETER["BIND_ADDRESS"], kinds=options.builtin_kinds)
    return receivers.start()


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


async def run_execute_async(run: Run, *, listeners: list[Callable[[dict], None]] | None = None,
                            cancel: asyncio.Event | None = None,
                            on_receivers: Callable[[BuiltinReceivers], None] | None = None) -> Run:
    """Execute a pending run to the end, starting the built-in receivers it needs for the duration."""
    options = RunOptions.from_json(run.options)
    endpoints = EndpointSet.from_json(run.endpoints)
    receivers = None
    try:
        if options.send and options.builtin_kinds:
            try:
                receivers = await asyncio.to_thread(_start_receivers, options)
            except OSError as exc:
                run.status, run.error = Run.Status.ERROR, f"could not start the built-in receivers: {exc}"
                await sync_to_async(run.save)(update_fields=["status", "error"])
                return run
            endpoints = fill_builtin(endpoints, receivers.endpoints(calling_ae_title=settings.YEETER["AE_TITLE"]),
                                     options.builtin_kinds)
            run.endpoints = endpoints.to_json()
            await sync_to_async(run.save)(update_fields=["endpoints"])
            if on_receivers is not None:
                on_receivers(receivers)
        runner = SimulationRunner(run, endpoints=endpoints, options=options,
                                  recorder=EventRecorder(run.pk, listeners=listeners), cancel=cancel)
        try:
            return await runner.execute()
        except Exception as exc:  # the run itself broke (not one patient): record it, never leave it "running"
            logger.exception("run %s aborted", run.pk)
            run.status, run.error = Run.Status.ERROR, f"{type(exc).__name__}: {exc}"
            await sync_to_async(run.save)(update_fields=["status", "error"])
            return run
    finally:
        if receivers is not None:
            await asyncio.to_thread(receivers.stop)


def run_execute(run: Run, *, listeners: list[Callable[[dict], None]] | None = None) -> Run:
    """Execute a pending run to the end in this thread (its own event loop)."""
    return asyncio.run(run_execute_async(run, listeners=listeners))


def run_start(*, scenario: Scenario | None, steps_json=None, patients: int | None = None, concurrency: int | None = None,
              seed: int | None = None, endpoint_ids=(), send: bool = True, max_instances_per_series: int | None = None,
              validate_hl7: bool = False, commit_listen: CommitListen | None = None) -> Run:
    """Create a run from the API/web page and start it in the background (Celery when configured,
    otherwise a thread of this process). Kinds no given endpoint serves use built-in receivers."""
    from simulations.endpoints import endpoint_set_from_rows
    from simulations.models import Endpoint

    if steps_json is None:
        if scenario is None:
            raise ScenarioError(["steps: give a scenario or inline steps."])
        steps_json = scenario.steps
    chosen = list(Endpoint.objects.filter(pk__in=list(endpoint_ids)))
    missing_ids = set(endpoint_ids) - {e.pk for e in chosen}
    if missing_ids:
        raise ScenarioError([f"endpoints: no endpoint with id {', '.join(map(str, sorted(missing_ids)))}."])
    defaults = chosen + (list(scenario.endpoints.all()) if scenario else [])
    endpoints = endpoint_set_from_rows(Endpoint.objects.all(), defaults=defaults)
    if commit_listen is not None:  # where commitment reports on a new association arrive (PS3.4 J.3.3)
        endpoints = dataclasses.replace(endpoints, commit_listen=commit_listen)
    options = RunOptions(send=send,
                         validate_hl7=validate_hl7, max_instances_per_series=max_instances_per_series,
                         pixel_workers=settings.YEETER["PIXEL_WORKERS"],
                         sending_application=settings.YEETER["HL7_SENDING_APPLICATION"],
                         sending_facility=settings.YEETER["HL7_SENDING_FACILITY"],
                         builtin_kinds=missing_kinds(endpoints) if send else ())
    run = run_create(steps_json=steps_json, scenario=scenario, endpoints=endpoints, options=options, seed=seed,
                     patients=patients or (scenario.default_patients if scenario else 1),
                     concurrency=concurrency or (scenario.concurrency if scenario else 4),
                     arrival=scenario.arrival if scenario else "all_at_once",
                     rate_per_hour=scenario.rate_per_hour if scenario else None)
    transaction.on_commit(lambda: run_dispatch(run_id=run.pk))
    return run


def run_dispatch(*, run_id) -> None:
    """Hand a pending run to a Celery worker when a broker is configured, else to a background thread."""
    if settings.CELERY_BROKER_URL:
        from simulations.tasks import run_simulation

        run_simulation.delay(str(run_id))
        return
    threading.Thread(target=_run_in_thread, args=(run_id,), name=f"run-{run_id}", daemon=True).start()


def _run_in_thread(run_id) -> None:
    from django.db import close_old_connections

    try:
        run_execute(Run.objects.get(pk=run_id))
    except Exception:  # noqa: BLE001 - a background run must record its failure, not vanish
        logger.exception("run %s failed", run_id)
        Run.objects.filter(pk=run_id).update(status=Run.Status.ERROR, error="internal error; see the server log")
    finally:
        close_old_connections()


def run_cancel(*, run: Run) -> Run:
    """Ask a run to stop: patients not yet finished end as cancelled; generated files are kept."""
    if not run.is_finished:
        Run.objects.filter(pk=run.pk).update(cancel_requested=True)
        run.cancel_requested = True
    return run


@transaction.atomic
def scenario_create(*, fields: dict, endpoints=()) -> Scenario:
    """A new scenario whose steps were validated against the catalog first (:class:`ScenarioError`)."""
    scenario_validate(steps_json=fields.get("steps"))
    scenario = Scenario(**fields)
    scenario.full_clean()
    scenario.save()
    scenario.endpoints.set(endpoints)
    return scenario


def endpoint_create(*, fields: dict):
    """A new endpoint, checked by ``Endpoint.clean()`` (``ValidationError`` per field)."""
    from simulations.models import Endpoint

    endpoint = Endpoint(**fields)
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def endpoint_check(*, endpoint, timeout_cap: float) -> tuple[str, float | None, str | None]:
    """Is the peer there? (method, latency seconds, error): C-ECHO for DICOM endpoints, an MLLP
    NMD^N02 round trip for HL7, a writable folder for worklist folders. Never waits longer than
    ``timeout_cap`` whatever the endpoint's own timeouts."""
    import os

    from simulations.endpoints import HL7Target, target_for
    from simulations.transport.dimse.echo import echo
    from simulations.transport.errors import SendError
    from simulations.transport.mllp import mllp_ping

    try:
        target = target_for(endpoint)
    except SendError as exc:  # e.g. an unreadable CA file (TlsConfigError)
        return "TLS", None, exc.message
    if isinstance(target, Path):
        if not target.is_dir():
            return "folder", None, f"{target} is not a folder."
        if not os.access(target, os.W_OK):
            return "folder", None, f"{target} is not writable by the simulator."
        return "folder", None, None
    if isinstance(target, HL7Target):
        try:
            return "MLLP NMD^N02", mllp_ping(target.host, target.port, ssl_context=target.ssl_context(),
                                             timeout=min(target.connect_timeout, target.timeout, timeout_cap)), None
        except SendError as exc:
            return "MLLP NMD^N02", None, exc.message
    peer = dataclasses.replace(target, timeout=min(target.timeout, timeout_cap))
    try:
        return "C-ECHO", echo(peer), None
    except SendError as exc:
        return "C-ECHO", None, exc.message
