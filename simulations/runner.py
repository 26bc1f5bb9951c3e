"""Running patient stories: one story (:func:`run_story`), and a whole run in this process
(:class:`SimulationRunner`, the embedded default); :mod:`simulations.distributed` runs the same stories
as Celery tasks.

A story is planned first (:mod:`simulations.plan`: exam, patient, identity set — every message is built
from it, so HL7, worklist, MPPS, DICOM and report agree), then its steps run one after the other through
the handlers of :mod:`simulations.handlers`, and the verification at the end checks that they agree.
Patients run concurrently (bounded by the run's concurrency); pixel generation runs in a process pool so
it never stalls the network work on the event loop; blocking DIMSE calls run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from generators.hl7 import HL7ValidationError
from simulations.artifacts import PatientFiles, identity_json
from simulations.collector import run_collection
from simulations.events import EventRecorder, EventType
from simulations.handlers import HANDLERS, RunContext, StepFailed, Story
from simulations.handlers.base import now
from simulations.models import Run, RunPatient
from simulations.options import RunOptions, worker_id
from simulations.plan import PatientPlan, PlanError, PlanInputs, plan_patient
from simulations.stats import RunStats, run_summary
from simulations.steps import Step, StepType, order_step, parse_steps
from simulations.transport.dimse.commitment import acquire_listener, release_listener
from simulations.transport.errors import SendError
from simulations.verification import verify_patient

logger = logging.getLogger(__name__)


# -- one patient story ----------------------------------------------------------------------------
def _plan_sync(run: Run, ctx: RunContext, row: RunPatient) -> PatientPlan:
    """The row's plan: the one it was given (a story redone keeps its plan), else a new one, recorded."""
    close_old_connections()
    if row.plan:
        return PatientPlan.from_json(row.plan)
    options = ctx.options
    inputs = PlanInputs(run_seed=run.seed, ids_basis=str(run.seed if options.replay_ids else run.pk),
                        index=row.index, now=now(), mrn_format=options.mrn_format,
                        facility=options.sending_facility, station_ae_title=options.station_ae_title)
    plan = plan_patient(order_step(ctx.steps).spec, inputs)
    order = plan.order
    RunPatient.objects.filter(pk=row.pk).update(
        plan=plan.to_json(), exam_id=order.exam.id, exam_code=order.exam.id, exam_name=order.exam.name,
        modality=order.exam.modality.value, cpt_code=order.exam.primary_code.code, patient_id=order.patient.mrn,
        patient_name=order.patient.name.dicom, accession_number=order.accession_number,
        study_instance_uid=order.study_instance_uid)
    return plan


async def _begin(run: Run, ctx: RunContext, row: RunPatient) -> Story:
    plan = await sync_to_async(_plan_sync)(run, ctx, row)
    order = plan.order
    files = PatientFiles.for_order(ctx.options.output_dir, row.index, order.accession_number)
    files.write_json("order.json", identity_json(order))
    story = Story(plan=plan, row=row, files=files, run=ctx)
    await story.emit(EventType.PATIENT_STARTED,
                     f"Patient {plan.number}: {order.patient.name.dicom} ({order.patient.mrn}, "
                     f"{order.patient.sex.value}, {order.patient.age} y), {order.setting.value}",
                     patient_id=order.patient.mrn, accession=order.accession_number)
    return story


async def _fail(story_or_row: Story | RunPatient, ctx: RunContext, step: Step | None, reason: str,
                stats: RunStats) -> None:
    row = story_or_row.row if isinstance(story_or_row, Story) else story_or_row
    where = step.label if step is not None else ""
    message = f"{where}: {reason}" if where else reason
    if step is not None:
        await ctx.recorder.emit(EventType.STEP_FAILED, f"{step.label} failed: {reason}", patient_pk=row.pk,
                                patient_index=row.index, step=step, level="error", payload={})
    await ctx.recorder.emit(EventType.PATIENT_FAILED, f"Patient {row.index + 1} failed: {message}",
                            patient_pk=row.pk, patient_index=row.index, level="error", payload={"reason": message})
    await _end_row(row, RunPatient.Status.FAILED, stats, error=message)


async def _end_row(row: RunPatient, status: str, stats: RunStats, **values: Any) -> None:
    """The story's end: its status and counters, once (a row another process ended keeps that end)."""
    values.update(status=status, stats=stats.to_json(), finished_at=timezone.now())
    for key, value in values.items():
        setattr(row, key, value)
    await sync_to_async(RunPatient.objects.filter(pk=row.pk, status=RunPatient.Status.RUNNING).update)(**values)


async def _verify(story: Story) -> None:
    study_dir = story.study.study_dir if story.study is not None else None
    result = await asyncio.to_thread(verify_patient, story.files, study_dir)
    await story.set_row(verification=result.to_json())
    if not result.ok:
        for m in result.mismatches[:20]:
            await story.emit(EventType.MISMATCH, f"{m['artifact']}: {m['field']} is {m['actual']!r}, expected "
                             f"{m['expected']!r}", level="error", **m)
        raise StepFailed(f"verification failed: {result.summary()}")
    story.stats.verified += 1
    await story.emit(EventType.VERIFIED, f"Verified: {result.summary()}", checked=result.checked)


async def run_story(run: Run, ctx: RunContext, row: RunPatient) -> str:
    """Plan (or take the row's plan), run every step, verify; the row ends passed, failed or cancelled and
    keeps the story's counters. Returns the row's status. The row must already be running (claimed)."""
    stats = RunStats()
    current: Step | None = None
    story: Story | None = None
    try:
        try:
            story = await _begin(run, ctx, row)
        except PlanError as exc:
            raise StepFailed(str(exc)) from exc
        stats = story.stats
        for step in ctx.steps:
            if ctx.cancel.is_set():
                await _end_row(row, RunPatient.Status.CANCELLED, stats)
                return row.status
            current = step
            began = time.perf_counter()
            try:
                await HANDLERS[step.type](step, story, ctx)
            finally:
                stats.step_seconds[step.type.value] += time.perf_counter() - began
            # a wait interrupted by cancellation ends the story
            if step.wait_after and not await ctx.sleep(step.wait_after / ctx.options.speed):
                await _end_row(row, RunPatient.Status.CANCELLED, stats)
                return row.status
        current = None
        await _verify(story)
        await _end_row(row, RunPatient.Status.PASSED, stats)
        await story.emit(EventType.PATIENT_PASSED, f"Patient {row.index + 1} passed")
    except (StepFailed, SendError, HL7ValidationError) as exc:
        if story is None:  # the plan failed: the order step is the one at fault
            current = order_step(ctx.steps)
        await _fail(story or row, ctx, current, str(exc), stats)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug must fail one patient loudly, not the whole run
        logger.exception("patient %s of run %s failed unexpectedly", row.index, run.pk)
        await _fail(story or row, ctx, current, f"internal error: {type(exc).__name__}: {exc}", stats)
    return row.status


# -- the end of a run, wherever its patients ran ----------------------------------------------------
def finish_run(run_pk, *, cancelled: bool) -> Run | None:
    """End a running run whose patients have all ended: status, summary (the patients' counters summed),
    ``finished_at``. Returns the run when this call ended it, None when it had already ended (the reaper,
    or another worker finishing at the same moment: the update is conditional)."""
    rows = list(RunPatient.objects.filter(run_id=run_pk).values_list("status", "stats"))
    statuses = Counter(status for status, _ in rows)
    stats = RunStats()
    for _, data in rows:
        stats.add(RunStats.from_json(data))
    run = Run.objects.get(pk=run_pk)
    passed, failed = statuses.get("passed", 0), statuses.get("failed", 0)
    if cancelled or run.cancel_requested:
        status = Run.Status.CANCELLED
    else:
        status = Run.Status.FAILED if failed else Run.Status.SUCCEEDED
    finished = timezone.now()
    elapsed = (finished - run.started_at).total_seconds() if run.started_at else 0.0
    summary = run_summary(stats, patients=run.patient_count, passed=passed, failed=failed,
                          cancelled=run.patient_count - passed - failed, elapsed=elapsed)
    if not Run.objects.filter(pk=run_pk, status=Run.Status.RUNNING).update(status=status, summary=summary,
                                                                           finished_at=finished):
        return None
    run.refresh_from_db()
    return run


async def announce_end(run: Run, recorder: EventRecorder) -> None:
    summary = run.summary
    kind = EventType.RUN_CANCELLED if run.status == Run.Status.CANCELLED else EventType.RUN_FINISHED
    await recorder.emit(kind, f"Run {run.status}: {summary['passed']} passed, {summary['failed']} failed, "
                              f"{summary['cancelled']} cancelled in {summary['duration_s']:.1f} s", payload=summary,
                        level="info" if run.status == Run.Status.SUCCEEDED else "warning")


async def start_commit_listener(ctx: RunContext) -> None:
    """The run's listener for commitment reports on a new association (PS3.4 J.3.3); runs of this process
    on the same address share it (reports are told apart by Transaction UID)."""
    where = ctx.endpoints.commit_listen
    if where is None or not ctx.sending or not any(s.type == StepType.STORAGE_COMMIT for s in ctx.steps):
        return
    try:
        ctx.commit_listener = await asyncio.to_thread(partial(acquire_listener, ae_title=where.ae_title,
                                                              host=where.host, port=where.port))
    except OSError as exc:
        raise OSError(f"cannot listen for Storage Commitment reports on {where}: {exc}") from None


async def stop_commit_listener(ctx: RunContext) -> None:
    if ctx.commit_listener is not None:
        listener, ctx.commit_listener = ctx.commit_listener, None
        await asyncio.to_thread(release_listener, listener)


def arrival_gaps(run: Run) -> random.Random:
    """The stream a Poisson run draws its gaps between arrivals from (``expovariate(rate/3600) / speed`` s)."""
    return random.Random(f"{run.seed}/arrivals")


# -- a whole run in this process ------------------------------------------------------------------
class SimulationRunner:
    """Executes one :class:`~simulations.models.Run` in this process (claimed by the caller)."""

    def __init__(self, run: Run, *, endpoints, options: RunOptions, recorder: EventRecorder,
                 cancel: asyncio.Event | None = None) -> None:
        self.run = run
        self.ctx = RunContext(run_pk=run.pk, steps=parse_steps(run.steps), endpoints=endpoints, options=options,
                              recorder=recorder, cancel=cancel or asyncio.Event())

    @property
    def cancel(self) -> asyncio.Event:
        return self.ctx.cancel

    async def execute(self) -> Run:
        with run_collection():
            return await self._execute()

    async def _execute(self) -> Run:
        run, ctx = self.run, self.ctx
        ctx.options.output_dir.mkdir(parents=True, exist_ok=True)
        run.status = Run.Status.RUNNING
        run.started_at = run.heartbeat_at = timezone.now()
        run.output_dir = str(ctx.options.output_dir)
        run.worker = worker_id()
        await sync_to_async(run.save)(update_fields=["status", "started_at", "output_dir", "worker", "heartbeat_at"])
        rows = await sync_to_async(self._create_rows)()
        await ctx.recorder.emit(EventType.RUN_STARTED,
                                f"Run started: {run.patient_count} patient(s), concurrency {run.concurrency}, "
                                f"seed {run.seed}", payload={"endpoints": ctx.endpoints.describe(),
                                                            "send": ctx.options.send})
        watchers = [asyncio.create_task(self._watch_cancel()), asyncio.create_task(self._heartbeat())]
        semaphore = asyncio.Semaphore(run.concurrency)
        aborted = True
        try:
            await start_commit_listener(ctx)
            try:
                # A task group: an error escaping one patient cancels the others instead of leaving
                # them running behind a run already recorded as broken.
                async with asyncio.TaskGroup() as group:
                    await self._arrivals(rows, semaphore, group)
            except BaseExceptionGroup as exc:
                raise exc.exceptions[0] from None
            aborted = False
        finally:
            for task in watchers:
                task.cancel()
            await stop_commit_listener(ctx)
            # Aborted (an error or a second Ctrl-C): do not wait for studies still being generated.
            await ctx.close(kill=aborted)
        await sync_to_async(RunPatient.objects.filter(run=run, status=RunPatient.Status.PENDING).update)(
            status=RunPatient.Status.CANCELLED, finished_at=timezone.now())
        ended = await sync_to_async(finish_run)(run.pk, cancelled=ctx.cancel.is_set())
        await sync_to_async(run.refresh_from_db)()
        if ended is not None:
            await announce_end(run, ctx.recorder)
        return run

    def _create_rows(self) -> list[RunPatient]:
        RunPatient.objects.filter(run=self.run).delete()
        return RunPatient.objects.bulk_create(
            [RunPatient(run=self.run, index=i) for i in range(self.run.patient_count)])

    async def _arrivals(self, rows: list[RunPatient], semaphore: asyncio.Semaphore, group: asyncio.TaskGroup) -> None:
        """Start each patient when it arrives: all at once, or as a Poisson process of ``rate_per_hour``
        (time scaled by the speed factor). The rate is re-read from the run every second, so a change
        (the simulator page's rate control) applies to the next arrivals: the gap being waited is
        redrawn at the new rate (exponential gaps are memoryless) and the change is an event."""
        run, ctx = self.run, self.ctx
        if run.arrival != "poisson" or not run.rate_per_hour:
            for row in rows:
                group.create_task(self._patient(row, semaphore))
            return
        gaps = arrival_gaps(run)
        rate = run.rate_per_hour
        for i, row in enumerate(rows):
            remaining = gaps.expovariate(rate / 3600.0) / ctx.options.speed if i else 0.0
            while remaining > 0 and await ctx.sleep(min(remaining, 1.0)):
                remaining -= 1.0
                current = await sync_to_async(
                    lambda: Run.objects.filter(pk=run.pk).values_list("rate_per_hour", flat=True).first())()
                if current and current != rate:
                    await ctx.recorder.emit(EventType.RATE_CHANGED, f"Arrival rate changed from {rate:g} to "
                                            f"{current:g} patients per hour", payload={"from": rate, "to": current})
                    rate = run.rate_per_hour = current
                    remaining = gaps.expovariate(rate / 3600.0) / ctx.options.speed
            group.create_task(self._patient(row, semaphore))

    async def _patient(self, row: RunPatient, semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            if self.ctx.cancel.is_set():
                return  # left pending: cancelled with the others at the end
            row.status, row.started_at = RunPatient.Status.RUNNING, timezone.now()
            await sync_to_async(RunPatient.objects.filter(pk=row.pk).update)(
                status=row.status, started_at=row.started_at, worker=worker_id())
            await run_story(self.run, self.ctx, row)

    async def _heartbeat(self) -> None:
        """Tell the world this process still executes the run (``Run.heartbeat_at``); a run whose
        heartbeat stops is abandoned by ``reap_runs``. A run ended elsewhere meanwhile is stopped."""
        interval = settings.YEETER["HEARTBEAT_SECONDS"]
        while True:
            await asyncio.sleep(interval)
            beating = await sync_to_async(
                lambda: Run.objects.filter(pk=self.run.pk, status=Run.Status.RUNNING).update(
                    heartbeat_at=timezone.now()))()
            if not beating:
                logger.warning("run %s was ended by another process; stopping it here", self.run.pk)
                self.ctx.cancel.set()
                return

    async def _watch_cancel(self) -> None:
        """Cancellation from elsewhere (API, admin) arrives as a flag on the run row."""
        while not self.ctx.cancel.is_set():
            await asyncio.sleep(0.5)
            flagged = await sync_to_async(
                lambda: Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists())()
            if flagged:
                self.ctx.cancel.set()
