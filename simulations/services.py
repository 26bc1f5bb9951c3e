"""Run workflows (HackSoft services): create a validated run, execute it, cancel it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from simulations.endpoints import CommitListen, EndpointSet
from simulations.events import EventRecorder, EventTail, EventType
from simulations.models import Run, Scenario
from simulations.receivers import BuiltinReceivers
from simulations.options import TRANSFER_SYNTAX_UIDS, RunOptions, worker_id
from simulations.distributed import distributable
from simulations.runner import SimulationRunner
from simulations.selectors import run_owner_fields
from simulations.steps import ScenarioError, parse_steps
from simulations.validation import (
    LimitExceeded,  # noqa: F401 - raised by run_create/run_start: callers catch it from here
    _check_runs_in_flight,
    _limit,
    check_run_size,
    fill_builtin,
    missing_kinds,
    scenario_validate,
)
from simulations.housekeeping import _close_run, run_abandon, run_owner_gone

logger = logging.getLogger(__name__)


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


def _claim(run: Run) -> bool:
    """Take a pending run for this process (one executor per run, whoever asks first)."""
    now = timezone.now()
    taken = Run.objects.filter(pk=run.pk, status=Run.Status.PENDING, cancel_requested=False).update(
        status=Run.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id())
    if not taken and Run.objects.filter(pk=run.pk, status=Run.Status.PENDING, cancel_requested=True).exists():
        _close_run(run.pk, Run.Status.CANCELLED, "cancelled before it started", only=(Run.Status.PENDING,))
    run.refresh_from_db()
    return bool(taken)




async def _end_run(run: Run, recorder: EventRecorder, status: str, event_type: str, reason: str) -> None:
    """``_close_run`` plus the event saying why; the row ``run`` is refreshed."""
    if await sync_to_async(_close_run)(run.pk, status, reason):
        await recorder.emit(event_type, f"Run {status}: {reason}", level="error", payload={"reason": reason})
    await sync_to_async(run.refresh_from_db)()


async def run_execute_async(run: Run, *, listeners: list[Callable[[dict], None]] | None = None,
                            cancel: asyncio.Event | None = None,
                            on_receivers: Callable[[BuiltinReceivers], None] | None = None,
                            in_process: bool = False) -> Run:
    """Execute a pending run to the end, starting the built-in receivers it needs for the duration.

    Whatever happens the run ends in a final state: an error of the run itself (not of one patient)
    ends it ``error`` with a ``run.error`` event saying why; being cancelled from outside (a second
    Ctrl-C, the process shutting down) ends it ``cancelled``. The receivers are always stopped.
    A run that is not pending (taken by another worker, cancelled meanwhile) is returned untouched.

    With a broker configured (and not ``in_process``) the patients go to the Celery workers as one task
    each (:mod:`simulations.distributed`); this process keeps the receivers, waits for the run to end and
    hands ``listeners`` every event the workers record, in order.
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
        if not in_process and distributable(run):
            return await _execute_on_workers(run, endpoints=endpoints, options=options, listeners=listeners,
                                             cancel=cancel)
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


async def _execute_on_workers(run: Run, *, endpoints: EndpointSet, options: RunOptions,
                              listeners: list[Callable[[dict], None]] | None, cancel: asyncio.Event | None) -> Run:
    from simulations.distributed import distribute, wait_for_end

    parse_steps(run.steps)  # a run whose steps cannot run ends here (ScenarioError: the run's error), not per worker
    tail = EventTail(run.pk, listeners or [])
    # The run's first event, before any worker can record a patient's.
    await EventRecorder(run.pk).emit(
        EventType.RUN_STARTED, f"Run started: {run.patient_count} patient(s), concurrency {run.concurrency}, "
        f"seed {run.seed}, one Celery task per patient", payload={"endpoints": endpoints.describe(),
                                                                  "send": options.send, "executor": "celery"})
    await sync_to_async(transaction.atomic(distribute))(run, endpoints=endpoints, options=options)
    run = await wait_for_end(run, cancel, on_tick=tail.poll)
    await tail.poll(final=True)
    return run


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
    """Execute a pending run in a background thread of this process; with a broker configured that thread
    holds the receivers and hands each patient to the Celery workers (:mod:`simulations.distributed`)."""
    # The thread belongs to this process: if it dies before the run starts, the reaper can tell.
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
    if run.status == Run.Status.RUNNING and run.executor == Run.Executor.CELERY:
        from simulations.distributed import cancel_queued

        cancel_queued(run)  # the queued tasks' patients end now; those in flight stop at their next step
        run.refresh_from_db()
    if run.status == Run.Status.RUNNING:
        reason = run_owner_gone(run)
        if reason is not None:
            run_abandon(run=run, reason=f"{reason}; cancelled")
    return run



# -- runs whose process died -----------------------------------------------------------------------


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
    previous = run.rate_per_hour
    Run.objects.filter(pk=run.pk).update(rate_per_hour=float(rate_per_hour))
    run.rate_per_hour = float(rate_per_hour)
    if run.executor == Run.Executor.CELERY and previous != run.rate_per_hour:
        # Nobody waits between arrivals here: the patients still to come are re-timed and queued again.
        from simulations.distributed import retime

        with transaction.atomic():
            moved = retime(run, run.rate_per_hour)
        async_to_sync(EventRecorder(run.pk).emit)(
            EventType.RATE_CHANGED, f"Arrival rate changed from {previous:g} to {run.rate_per_hour:g} patients per "
            f"hour ({moved} patient(s) still to arrive re-timed)", payload={"from": previous, "to": run.rate_per_hour})
    return run
