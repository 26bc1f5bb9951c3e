"""Run workflows (HackSoft services): create a validated run, execute it, cancel it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from simulations.endpoints import CommitListen, EndpointSet
from simulations.events import EventRecorder, EventType
from simulations.models import Run, RunPatient, Scenario
from simulations.processes import pid_alive
from simulations.receivers import BuiltinReceivers
from simulations.runner import TRANSFER_SYNTAX_UIDS, RunOptions, SimulationRunner, worker_id
from simulations.selectors import run_owner_fields
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


@transaction.atomic
def run_create(*, steps_json, patients: int, concurrency: int, endpoints: EndpointSet, options: RunOptions | None,
               scenario: Scenario | None = None, seed: int | None = None, arrival: str = "all_at_once",
               rate_per_hour: float | None = None, principal=None, enforce_limits: bool = False) -> Run:
    """Validate and record a run (status pending). ``options.output_dir`` defaults to the data dir.

    ``principal`` (a user or an API key client) becomes the run's owner; ``enforce_limits`` applies the
    quotas of ``settings.LIMITS`` (API and page starts; ``runsim`` is the operator's own machine).
    """
    scenario_validate(steps_json=steps_json, endpoints=endpoints, send=options.send if options else True,
                      builtin_kinds=options.builtin_kinds if options else ())
    if patients < 1:
        raise ScenarioError(["patients: a run needs at least one patient."])
    if concurrency < 1:
        raise ScenarioError(["concurrency: must be at least 1."])
    if arrival == Scenario.Arrival.POISSON and not rate_per_hour:
        raise ScenarioError(["rate_per_hour: Poisson arrivals need a rate (patients per hour)."])
    owner = run_owner_fields(principal)
    if enforce_limits:
        check_run_size(patients=patients,
                       max_instances_per_series=options.max_instances_per_series if options else None)
        _check_runs_in_flight(owner)
    run = Run(**owner, scenario=scenario, scenario_name=scenario.name if scenario else "", steps=steps_json,
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


def _claim(run: Run) -> bool:
    """Take a pending run for this process (one executor per run, whoever asks first)."""
    now = timezone.now()
    taken = Run.objects.filter(pk=run.pk, status=Run.Status.PENDING, cancel_requested=False).update(
        status=Run.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id())
    if not taken and Run.objects.filter(pk=run.pk, status=Run.Status.PENDING, cancel_requested=True).exists():
        _close_run(run.pk, Run.Status.CANCELLED, "cancelled before it started", only=(Run.Status.PENDING,))
    run.refresh_from_db()
    return bool(taken)


def _close_run(run_pk, status: str, reason: str, *,
               only: tuple[str, ...] = (Run.Status.PENDING, Run.Status.RUNNING)) -> bool:
    """End a run that did not finish by itself in ``status``: its pending patients are cancelled and
    those in flight failed with ``reason``. False when it had already ended (nothing changed)."""
    now = timezone.now()
    with transaction.atomic():
        ended = Run.objects.filter(pk=run_pk, status__in=only).update(status=status, error=reason, finished_at=now)
        if not ended:
            return False
        RunPatient.objects.filter(run_id=run_pk, status=RunPatient.Status.PENDING).update(
            status=RunPatient.Status.CANCELLED, finished_at=now)
        RunPatient.objects.filter(run_id=run_pk, status=RunPatient.Status.RUNNING).update(
            status=RunPatient.Status.FAILED, error=reason, finished_at=now)
        counts = Counter(RunPatient.objects.filter(run_id=run_pk).values_list("status", flat=True))
        run = Run.objects.get(pk=run_pk)
        run.summary = {**run.summary, "patients": run.patient_count, "passed": counts.get("passed", 0),
                       "failed": counts.get("failed", 0),
                       "cancelled": run.patient_count - counts.get("passed", 0) - counts.get("failed", 0)}
        run.save(update_fields=["summary"])
    return True


async def _end_run(run: Run, recorder: EventRecorder, status: str, event_type: str, reason: str) -> None:
    """``_close_run`` plus the event saying why; the row ``run`` is refreshed."""
    if await sync_to_async(_close_run)(run.pk, status, reason):
        await recorder.emit(event_type, f"Run {status}: {reason}", level="error", payload={"reason": reason})
    await sync_to_async(run.refresh_from_db)()


async def run_execute_async(run: Run, *, listeners: list[Callable[[dict], None]] | None = None,
                            cancel: asyncio.Event | None = None,
                            on_receivers: Callable[[BuiltinReceivers], None] | None = None) -> Run:
    """Execute a pending run to the end, starting the built-in receivers it needs for the duration.

    Whatever happens the run ends in a final state: an error of the run itself (not of one patient)
    ends it ``error`` with a ``run.error`` event saying why; being cancelled from outside (a second
    Ctrl-C, the process shutting down) ends it ``cancelled``. The receivers are always stopped.
    A run that is not pending (taken by another worker, cancelled meanwhile) is returned untouched.
    """
    if not await sync_to_async(_claim)(run):
        return run
    recorder = EventRecorder(run.pk, listeners=listeners)
    options = RunOptions.from_json(run.options)
    endpoints = EndpointSet.from_json(run.endpoints)
    receivers = None
    try:
        if options.send and options.builtin_kinds:
            try:
                receivers = await asyncio.to_thread(_start_receivers, options)
            except OSError as exc:
                await _end_run(run, recorder, Run.Status.ERROR, EventType.RUN_ERROR,
                               f"could not start the built-in receivers: {exc}")
                return run
            endpoints = fill_builtin(endpoints, receivers.endpoints(calling_ae_title=settings.YEETER["AE_TITLE"]),
                                     options.builtin_kinds)
            run.endpoints = endpoints.to_json()
            await sync_to_async(run.save)(update_fields=["endpoints"])
            if on_receivers is not None:
                on_receivers(receivers)
        runner = SimulationRunner(run, endpoints=endpoints, options=options, recorder=recorder, cancel=cancel)
        return await runner.execute()
    except Exception as exc:  # the run itself broke (not one patient): record it, never leave it "running"
        logger.exception("run %s aborted", run.pk)
        await _end_run(run, recorder, Run.Status.ERROR, EventType.RUN_ERROR,
                       f"the run aborted: {type(exc).__name__}: {exc}")
        return run
    except (asyncio.CancelledError, KeyboardInterrupt):
        await asyncio.shield(_end_run(run, recorder, Run.Status.CANCELLED, EventType.RUN_CANCELLED,
                                      "stopped at once (interrupted again, or the process is shutting down); "
                                      "steps in flight were abandoned"))
        raise
    finally:
        if receivers is not None:
            await asyncio.to_thread(receivers.stop)


def run_execute(run: Run, *, listeners: list[Callable[[dict], None]] | None = None) -> Run:
    """Execute a pending run to the end in this thread (its own event loop)."""
    return asyncio.run(run_execute_async(run, listeners=listeners))


def run_start(*, scenario: Scenario | None, steps_json=None, patients: int | None = None, concurrency: int | None = None,
              seed: int | None = None, endpoint_ids=(), send: bool = True, max_instances_per_series: int | None = None,
              validate_hl7: bool = False, speed: float = 1.0, transfer_syntax: str = "explicit",
              arrival: str | None = None, rate_per_hour: float | None = None, principal=None,
              commit_listen: CommitListen | None = None) -> Run:
    """Create a run from the API/web page and start it in the background (Celery when configured,
    otherwise a thread of this process). Kinds no given endpoint serves use built-in receivers.

    ``principal`` owns the run (:func:`simulations.selectors.run_owner_fields`); the quotas of
    ``settings.LIMITS`` apply (:class:`LimitExceeded`). Without ``max_instances_per_series`` series are
    capped at the instances-per-series limit. ``arrival``/``rate_per_hour`` default to the scenario's;
    a rate alone means Poisson arrivals.
    """
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
    if transfer_syntax not in TRANSFER_SYNTAX_UIDS:
        raise ScenarioError([f"transfer_syntax: use one of {', '.join(sorted(TRANSFER_SYNTAX_UIDS))}."])
    if not (speed > 0 and speed < float("inf")):
        raise ScenarioError(["speed: must be a finite number greater than 0."])
    if commit_listen is not None:  # where commitment reports on a new association arrive (PS3.4 J.3.3)
        endpoints = dataclasses.replace(endpoints, commit_listen=commit_listen)
    patients = patients or (scenario.default_patients if scenario else 1)
    if arrival is None:
        arrival = "poisson" if rate_per_hour else (scenario.arrival if scenario else "all_at_once")
        if rate_per_hour is None and scenario is not None:
            rate_per_hour = scenario.rate_per_hour
    if arrival == Scenario.Arrival.ALL_AT_ONCE:
        rate_per_hour = None
    options = RunOptions(send=send, speed=speed, transfer_syntax=transfer_syntax,
                         validate_hl7=validate_hl7,
                         max_instances_per_series=max_instances_per_series or _limit("INSTANCES_PER_SERIES"),
                         pixel_workers=settings.YEETER["PIXEL_WORKERS"],
                         sending_application=settings.YEETER["HL7_SENDING_APPLICATION"],
                         sending_facility=settings.YEETER["HL7_SENDING_FACILITY"],
                         builtin_kinds=missing_kinds(endpoints) if send else ())
    run = run_create(steps_json=steps_json, scenario=scenario, endpoints=endpoints, options=options, seed=seed,
                     patients=patients, concurrency=concurrency or (scenario.concurrency if scenario else 4),
                     arrival=arrival, rate_per_hour=rate_per_hour, principal=principal, enforce_limits=True)
    transaction.on_commit(lambda: run_dispatch(run_id=run.pk))
    return run


def run_dispatch(*, run_id) -> None:
    """Hand a pending run to a Celery worker when a broker is configured, else to a background thread."""
    if settings.CELERY_BROKER_URL:
        from simulations.tasks import run_simulation

        run_simulation.delay(str(run_id))
        return
    # The thread belongs to this process: if it dies before the run starts, the reaper can tell
    # (a pending run queued for Celery has no worker yet and is never reaped).
    Run.objects.filter(pk=run_id, status=Run.Status.PENDING).update(worker=worker_id())
    threading.Thread(target=_run_in_thread, args=(run_id,), name=f"run-{run_id}", daemon=True).start()


def _run_in_thread(run_id) -> None:
    from django.db import close_old_connections

    try:
        run_execute(Run.objects.get(pk=run_id))
    except Exception:  # noqa: BLE001 - a background run must record its failure, not vanish
        logger.exception("run %s failed", run_id)
        _close_run(run_id, Run.Status.ERROR, "internal error; see the server log")
    finally:
        close_old_connections()


def run_cancel(*, run: Run) -> Run:
    """Ask a run to stop: patients not yet finished end as cancelled; generated files are kept.

    A run whose process is gone (see :func:`run_owner_gone`) cannot act on the flag: it is ended
    here and now as abandoned, with the reason in its events.
    """
    if run.is_finished:
        return run
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    if run.status == Run.Status.RUNNING:
        reason = run_owner_gone(run)
        if reason is not None:
            run_abandon(run=run, reason=f"{reason}; cancelled")
    return run


def runs_housekeep() -> None:
    """What every Yeeter process does once at start (runsim, serve, a Celery worker, the first web
    request): abandon the runs whose process is gone, and delete runs past the retention
    (``YEETER_RUN_RETENTION_DAYS``, off by default)."""
    for run, reason in runs_reap():
        logger.warning("run %s abandoned: %s", run.pk, reason)
    days = settings.YEETER["RUN_RETENTION_DAYS"]
    if days:
        pruned = runs_prune(older_than=timedelta(days=days))
        if pruned:
            logger.warning("retention (%s days): deleted %s run(s), %.1f MB freed", days, len(pruned),
                           sum(p.bytes for p in pruned) / 1e6)


# -- disk: finished runs past their time -----------------------------------------------------------

_UID_NAME = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a UID as a folder name, nothing that could climb out


@dataclass(frozen=True)
class PrunedRun:
    """A finished run deleted (or that would be, in a dry run): its files and the bytes they held."""

    run_id: str
    status: str
    finished_at: dt.datetime | None
    paths: tuple[Path, ...]
    bytes: int
    files: int
    error: str = ""  # a folder that could not be deleted: the run row is kept so a later prune retries


def _size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    total = count = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
                count += 1
            except OSError:
                pass
    return total, count


def _run_paths(run: Run, keep_uids: set[str]) -> list[Path]:
    """The folders a run wrote: its run folder (or, for a folder the user chose with --output, only
    its own patient and study folders in it) and, when the built-in Storage SCP received its studies,
    those received copies — unless another run kept holds the same study (same seed, same UIDs)."""
    data = Path(settings.DATA_DIR).resolve()
    patients = list(run.patients.values_list("index", "accession_number", "study_instance_uid"))
    uids = {uid for _, _, uid in patients if _UID_NAME.match(uid or "")}
    paths: list[Path] = []
    if run.output_dir:
        out = Path(run.output_dir).resolve()
        if out == data / "runs" / str(run.id):
            paths.append(out)
        else:
            paths += [out / "patients" / f"{index:05d}-{accession}" for index, accession, _ in patients if accession]
            paths += [out / uid for uid in sorted(uids)]
    if "storage" in run.options.get("builtin_kinds", []):
        paths += [data / "received" / uid for uid in sorted(uids - keep_uids)]
    return [p for p in paths if p.exists()]


def runs_prune(*, older_than: timedelta, keep_failed: bool = False, dry_run: bool = False) -> list[PrunedRun]:
    """Delete finished runs that ended more than ``older_than`` ago: their rows (patients, events,
    worklist entries) and their files (:func:`_run_paths`). A run still pending or running is never
    touched; ``keep_failed`` keeps runs that failed, errored or were abandoned (the ones worth a look)."""
    cutoff = timezone.now() - older_than
    finished = Run.objects.filter(status__in=Run.FINISHED)
    old = finished.filter(finished_at__lt=cutoff) | finished.filter(finished_at__isnull=True, created_at__lt=cutoff)
    if keep_failed:
        old = old.exclude(status__in=[Run.Status.FAILED, Run.Status.ERROR, Run.Status.ABANDONED])
    doomed = list(old.order_by("created_at"))
    keep_uids = set(RunPatient.objects.exclude(run__in=[r.pk for r in doomed]).values_list("study_instance_uid",
                                                                                           flat=True))
    pruned: list[PrunedRun] = []
    for run in doomed:
        paths = _run_paths(run, keep_uids)
        sizes = [_size(p) for p in paths]
        error = ""
        if not dry_run:
            for path in paths:
                try:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                except OSError as exc:
                    error = f"{path}: {exc.strerror or exc}"
                    break
            if not error:
                out = Path(run.output_dir) if run.output_dir else None
                for folder in (out / "patients", out) if out else ():
                    try:
                        folder.rmdir()  # only when nothing else lives there
                    except OSError:
                        pass
                run.delete()
        pruned.append(PrunedRun(str(run.pk), run.status, run.finished_at, tuple(paths),
                                sum(b for b, _ in sizes), sum(c for _, c in sizes), error))
    return pruned


# -- runs whose process died -----------------------------------------------------------------------

def run_owner_gone(run: Run, *, stale_after: float | None = None) -> str | None:
    """Why the process executing a running run (or holding a pending one) is gone, or None while it lives.

    Gone: its ``host:pid`` is on this host and that pid is not alive, or — running runs only — its
    heartbeat (``Run.heartbeat_at``, written every ``YEETER_HEARTBEAT_SECONDS``) is older than
    ``stale_after`` seconds (default ``YEETER_RUN_STALE_SECONDS``) — a worker on another host.
    """
    stale = float(settings.YEETER["RUN_STALE_SECONDS"] if stale_after is None else stale_after)
    host, _, pid = run.worker.rpartition(":")
    if host and host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() \
            and not pid_alive(int(pid)):
        return f"its process {run.worker} is no longer running"
    if run.status != Run.Status.RUNNING:
        return None  # a pending run has no heartbeat yet: only a dead owner process ends it
    beat = run.heartbeat_at or run.started_at or run.created_at
    silent = (timezone.now() - beat).total_seconds() if beat else float("inf")
    if silent > stale:
        return (f"no heartbeat from {run.worker or 'its process'} for {silent:.0f} s "
                f"(the limit is {stale:.0f} s, YEETER_RUN_STALE_SECONDS)")
    return None


def run_abandon(*, run: Run, reason: str) -> bool:
    """Mark a run whose process is gone ``abandoned``; False when it had ended meanwhile."""
    if not _close_run(run.pk, Run.Status.ABANDONED, f"abandoned: {reason}",
                      only=(Run.Status.PENDING, Run.Status.RUNNING)):
        return False
    async_to_sync(EventRecorder(run.pk).emit)(
        EventType.RUN_ABANDONED, f"Run abandoned: {reason}. Patients in flight failed, the others were cancelled.",
        level="error", payload={"reason": reason, "worker": run.worker})
    run.refresh_from_db()
    return True


def runs_reap(*, stale_after: float | None = None) -> list[tuple[Run, str]]:
    """Abandon every running run whose process is gone, and every pending run whose dispatching process
    died before it started; returns each with the reason."""
    reaped = []
    held = Run.objects.filter(status=Run.Status.PENDING).exclude(worker="")
    for run in (Run.objects.filter(status=Run.Status.RUNNING) | held).order_by("created_at"):
        reason = run_owner_gone(run, stale_after=stale_after)
        if reason is not None and run_abandon(run=run, reason=reason):
            reaped.append((run, reason))
    return reaped


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


MAX_RATE_PER_HOUR = 1e6


def run_set_rate(*, run: Run, rate_per_hour: float) -> Run:
    """Change a Poisson run's arrival rate while it runs; the runner picks it up before the next
    arrival and records the change as a ``run.rate_changed`` event (:class:`ScenarioError` if refused)."""
    import math

    if isinstance(rate_per_hour, bool) or not isinstance(rate_per_hour, (int, float)) \
            or not math.isfinite(rate_per_hour) or not 0 < rate_per_hour <= MAX_RATE_PER_HOUR:
        raise ScenarioError([f"rate_per_hour: give patients per hour, a number above 0 and at most "
                             f"{MAX_RATE_PER_HOUR:g}, got {rate_per_hour!r}."])
    if run.arrival != Scenario.Arrival.POISSON:
        raise ScenarioError(["rate_per_hour: this run's patients arrive all at once; only Poisson runs have a rate."])
    if run.is_finished:
        raise ScenarioError([f"rate_per_hour: run {run.pk} already finished ({run.status})."])
    Run.objects.filter(pk=run.pk).update(rate_per_hour=float(rate_per_hour))
    run.rate_per_hour = float(rate_per_hour)
    return run
