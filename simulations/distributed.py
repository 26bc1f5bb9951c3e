"""Scale-out: a run split into one Celery task per patient, executed by ``celery -A yeeter worker`` on any
number of machines (with ``CELERY_BROKER_URL`` set; the embedded default runs in-process).

- The dispatching process (runsim, or a thread of the web server) claims the run, starts the built-in
  receivers the run needs (all workers send to them), gives each patient its arrival time
  (``RunPatient.due_at``: all at once, or the Poisson arrivals of the run's seed and rate) and queues its
  task with that ETA. It then waits for the run to end, heartbeating it, and stops the receivers.
- A task (:func:`execute_patient`) claims its patient in a transaction that locks the run row: not before
  its arrival time, not while the run already has ``concurrency`` patients in flight (it is retried a
  moment later), never a patient that has ended or that a live worker holds. Then it runs the story
  (:func:`simulations.runner.run_story`) with the plan kept on the row, so a redelivered task (its worker
  was killed) redoes the same story: its earlier events are removed, its files and study rewritten with
  the same UIDs. The last patient to end finishes the run, whichever worker that is.
- Cancel reaches queued tasks: the patients not yet started are cancelled in the database at once.
- A rate change re-times the patients still to arrive from now at the new rate and queues them again
  (a task arriving twice finds its patient taken and does nothing).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from simulations.collector import run_collection
from simulations.endpoints import EndpointSet
from simulations.events import EventRecorder, EventType
from simulations.handlers import RunContext
from simulations.models import Run, RunEvent, RunPatient
from simulations.options import RunOptions, worker_id
from simulations.runner import announce_end, arrival_gaps, finish_run, run_story
from simulations.steps import parse_steps

logger = logging.getLogger(__name__)

RETRY_SECONDS = 0.5  # a patient waiting for a concurrency slot asks again this often


def distributable(run: Run) -> bool:
    """Whether this run goes to the workers: a broker is configured and nothing ties it to one process
    (reports on a new association come to one listener: such a run stays in-process)."""
    return bool(settings.CELERY_BROKER_URL) and not (run.endpoints or {}).get("commit_listen")


# -- the dispatching side ---------------------------------------------------------------------------
def arrival_times(run: Run, start: dt.datetime, *, speed: float, first: int = 0,
                  rate: float | None = None) -> list[dt.datetime]:
    """When patients ``first``.. arrive: all at ``start``, or Poisson gaps at ``rate`` (default the run's)."""
    count = run.patient_count - first
    rate = rate or run.rate_per_hour
    if run.arrival != "poisson" or not rate:
        return [start] * count
    gaps = arrival_gaps(run)
    times, at = [], start
    for i in range(count):
        if i or first:
            at = at + dt.timedelta(seconds=gaps.expovariate(rate / 3600.0) / speed)
        times.append(at)
    return times


def _queue(run_pk, rows: list[tuple[int, dt.datetime]]) -> None:
    from simulations.tasks import run_patient

    for index, due in rows:
        run_patient.apply_async((str(run_pk), index), eta=due, queue=settings.CELERY_TASK_DEFAULT_QUEUE)


def distribute(run: Run, *, endpoints: EndpointSet, options: RunOptions) -> None:
    """Turn a claimed (running) run into queued patient tasks; called by the dispatching process."""
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(executor=Run.Executor.CELERY, endpoints=endpoints.to_json(),
                                         started_at=now, heartbeat_at=now)
    run.refresh_from_db()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    times = arrival_times(run, now, speed=options.speed)
    RunPatient.objects.filter(run=run).delete()
    RunPatient.objects.bulk_create([RunPatient(run=run, index=i, due_at=due) for i, due in enumerate(times)])
    transaction.on_commit(lambda: _queue(run.pk, list(enumerate(times))))


def retime(run: Run, rate: float) -> int:
    """A Poisson run's rate changed: the patients still to arrive are re-timed from now at ``rate`` and queued
    again; returns how many."""
    pending = list(RunPatient.objects.filter(run=run, status=RunPatient.Status.PENDING, due_at__gt=timezone.now())
                   .order_by("index").values_list("index", flat=True))
    if not pending:
        return 0
    options = RunOptions.from_json(run.options)
    times = arrival_times(run, timezone.now(), speed=options.speed, first=pending[0], rate=rate)
    rows = list(zip(pending, times, strict=False))
    for index, due in rows:
        RunPatient.objects.filter(run=run, index=index).update(due_at=due)
    transaction.on_commit(lambda: _queue(run.pk, rows))
    return len(rows)


def cancel_queued(run: Run) -> None:
    """Cancel reaches the tasks still queued: their patients end cancelled now; the run ends with the last
    patient in flight (or here, when none is)."""
    RunPatient.objects.filter(run=run, status=RunPatient.Status.PENDING).update(
        status=RunPatient.Status.CANCELLED, finished_at=timezone.now())
    finish_if_done(run.pk)


async def wait_for_end(run: Run, cancel: asyncio.Event | None = None, *, on_tick=None) -> Run:
    """Wait (heartbeating the run) until it has ended; ``cancel`` set meanwhile cancels it; ``on_tick``
    (a coroutine function) is awaited every round (runsim's display reads the recorded events)."""
    interval = settings.YEETER["HEARTBEAT_SECONDS"]
    beat = time.monotonic()
    cancelled = warned = False
    while True:
        await sync_to_async(run.refresh_from_db)()
        if on_tick is not None:
            await on_tick()
        if run.is_finished:
            return run
        if cancel is not None and cancel.is_set() and not cancelled:
            from simulations.services import run_cancel

            cancelled = True
            await sync_to_async(run_cancel)(run=run)
        if time.monotonic() - beat >= interval:
            beat = time.monotonic()
            await sync_to_async(Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update)(
                heartbeat_at=timezone.now())
            if not warned and await sync_to_async(_untaken)(run):
                warned = True
                queue = settings.CELERY_TASK_DEFAULT_QUEUE
                await EventRecorder(run.pk).emit(
                    EventType.RUN_WAITING, f"No worker has taken a patient due {UNTAKEN_S} s ago: is `celery -A yeeter "
                    f"worker -Q {queue}` running against this database and broker? (Or run with --in-process.)",
                    level="warning", payload={"queue": queue})
        await asyncio.sleep(0.2)


UNTAKEN_S = 30  # a patient due this long ago and never taken: say that no worker seems to be there


def _untaken(run: Run) -> bool:
    patients = RunPatient.objects.filter(run=run)
    return (not patients.exclude(status=RunPatient.Status.PENDING).exists()
            and patients.filter(due_at__lt=timezone.now() - dt.timedelta(seconds=UNTAKEN_S)).exists())


# -- the worker side ------------------------------------------------------------------------------
class Claim:
    GO = "go"  # this worker executes the story
    WAIT = "wait"  # not yet: its arrival time, or the run's concurrency is full
    SKIP = "skip"  # nothing to do: ended, cancelled, or a live worker holds it


def claim_patient(run_pk, index: int, *, worker: str) -> tuple[str, float]:
    """Take patient ``index`` for ``worker``; ``(Claim.WAIT, seconds)`` says when to ask again."""
    stale = float(settings.YEETER["RUN_STALE_SECONDS"])
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_pk).first()
        row = RunPatient.objects.filter(run_id=run_pk, index=index).first()
        if run is None or row is None or run.status != Run.Status.RUNNING:
            return Claim.SKIP, 0.0
        if row.status not in (RunPatient.Status.PENDING, RunPatient.Status.RUNNING):
            return Claim.SKIP, 0.0
        now = timezone.now()
        if run.cancel_requested:
            if row.status == RunPatient.Status.PENDING:
                RunPatient.objects.filter(pk=row.pk).update(status=RunPatient.Status.CANCELLED, finished_at=now)
            transaction.on_commit(lambda: finish_if_done(run_pk))
            return Claim.SKIP, 0.0
        if row.status == RunPatient.Status.RUNNING:
            beat = row.heartbeat_at or row.started_at or now
            if row.worker != worker and (now - beat).total_seconds() < stale:
                return Claim.SKIP, 0.0  # delivered twice: the other worker is on it
        elif row.due_at is not None and row.due_at > now + dt.timedelta(seconds=0.05):
            return Claim.WAIT, (row.due_at - now).total_seconds()
        in_flight = RunPatient.objects.filter(run_id=run_pk, status=RunPatient.Status.RUNNING).exclude(
            pk=row.pk).count()
        if in_flight >= run.concurrency:
            return Claim.WAIT, RETRY_SECONDS
        RunPatient.objects.filter(pk=row.pk).update(status=RunPatient.Status.RUNNING, worker=worker,
                                                    heartbeat_at=now, started_at=row.started_at or now,
                                                    attempts=row.attempts + 1)
        return Claim.GO, 0.0


def finish_if_done(run_pk) -> None:
    """End the run if none of its patients is pending or in flight (the last one to end does this)."""
    if RunPatient.objects.filter(run_id=run_pk, status__in=[RunPatient.Status.PENDING,
                                                            RunPatient.Status.RUNNING]).exists():
        return
    run = finish_run(run_pk, cancelled=False)
    if run is not None:
        from asgiref.sync import async_to_sync

        async_to_sync(announce_end)(run, EventRecorder(run_pk))


async def execute_patient(run_pk, index: int) -> str:
    """Run the story of a claimed patient in this worker; returns the row's final status."""
    run = await sync_to_async(Run.objects.get)(pk=run_pk)
    row = await sync_to_async(RunPatient.objects.get)(run_id=run_pk, index=index)
    if row.attempts > 1:  # redelivered: the story is redone from its plan; what the last try said goes
        await sync_to_async(RunEvent.objects.filter(patient=row).delete)()
        await EventRecorder(run_pk).emit(EventType.PATIENT_RETRIED,
                                         f"Patient {row.number} taken up again by {row.worker} (try {row.attempts}): "
                                         "its worker stopped answering", patient_pk=row.pk, patient_index=row.index,
                                         level="warning", payload={"attempt": row.attempts, "worker": row.worker})
    options = RunOptions.from_json(run.options)
    ctx = RunContext(run_pk=run.pk, steps=parse_steps(run.steps), endpoints=EndpointSet.from_json(run.endpoints),
                     options=options, recorder=EventRecorder(run.pk), cancel=asyncio.Event(), pixel_threads=True)
    watcher = asyncio.create_task(_watch(run.pk, row.pk, ctx.cancel))
    try:
        with run_collection():
            return await run_story(run, ctx, row)
    finally:
        watcher.cancel()
        await ctx.close()


async def _watch(run_pk, row_pk, cancel: asyncio.Event) -> None:
    """Heartbeat the patient and its run; a cancel flag (or the run ended elsewhere) stops the story."""
    interval = min(settings.YEETER["HEARTBEAT_SECONDS"], 5)
    last = 0.0
    while True:
        await asyncio.sleep(0.5)
        state = await sync_to_async(
            lambda: Run.objects.filter(pk=run_pk).values_list("status", "cancel_requested").first())()
        if state is None or state[0] != Run.Status.RUNNING or state[1]:
            cancel.set()
            return
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            stamp = timezone.now()
            await sync_to_async(lambda: (RunPatient.objects.filter(pk=row_pk).update(heartbeat_at=stamp),
                                         Run.objects.filter(pk=run_pk, status=Run.Status.RUNNING).update(
                                             heartbeat_at=stamp)))()


def patient_task(run_pk, index: int) -> tuple[str, float]:
    """The body of the Celery task: claim, execute, finish the run if this was the last patient."""
    close_old_connections()
    decision, delay = claim_patient(run_pk, index, worker=worker_id())
    if decision != Claim.GO:
        return decision, delay
    try:
        status = asyncio.run(execute_patient(run_pk, index))
    except Exception as exc:  # noqa: BLE001 - outside the story (the run's rows, the steps): fail it, never hang
        logger.exception("patient %s of run %s could not be executed", index, run_pk)
        reason = f"internal error: {type(exc).__name__}: {exc}"
        RunPatient.objects.filter(run_id=run_pk, index=index, status=RunPatient.Status.RUNNING).update(
            status=RunPatient.Status.FAILED, error=reason, finished_at=timezone.now())
        status = RunPatient.Status.FAILED
    finally:
        close_old_connections()
    finish_if_done(run_pk)
    return status, 0.0


