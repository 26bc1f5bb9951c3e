"""SimulationRunner: ExamSpec-driven runs of the whole IHE Scheduled Workflow chain (EXAMGEN-4.0).

One exam is bound per patient story, from the catalog, by :meth:`SimulationRunner._select_exam`
(explicit exam id, then CPT code, then weighted random with filters — never a random modality and
never a modality read out of text). The identity set is minted once (``generators.identity``) and
every handler builds its message from it, so HL7, worklist, MPPS, DICOM and report agree; the
verification at the end of each patient checks that they do.

Patients run concurrently (bounded by the run's concurrency); pixel generation runs in a process
pool so it never stalls the network work on the event loop; blocking DIMSE calls run in threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from exams.errors import CatalogLookupError
from exams.factory import ExamFactory, ExamFilters, Selection
from exams.vocabulary import generate_indication
from generators.hl7 import HL7Config, HL7ValidationError, build_adt, build_orm, build_oru
from generators.hl7 import validate as validate_hl7
from generators.identity import mint_order
from generators.mpps import PerformedSeries, build_mpps_completed, build_mpps_in_progress
from generators.patients import generate_patient
from generators.reports import Report, build_report
from generators.terms import CareSetting, Priority, Sex
from generators.types import ExamInfo, Indication, Order, Patient
from generators.uids import new_uid
from generators.worklist import build_worklist_item, query_dataset
from simulations.artifacts import PatientFiles, identity_json
from simulations.documents import (
    DocumentChoice,
    document_seed,
    documents_time,
    is_document_series,
    write_study_with_documents,
)
from simulations.endpoints import EndpointSet, HL7Target
from simulations.events import EventRecorder, EventType
from simulations.models import Run, RunPatient, WorklistEntry
from simulations.pacs_verify import SentStudy, verify_pacs, verify_pacs_qido
from simulations.pool import PixelPool
from simulations.receivers import publish_worklist_entry
from simulations.steps import Step, StepType, parse_steps
from simulations.transport.dimse.commitment import (
    CommitmentListener,
    CommitmentNotOffered,
    acquire_listener,
    release_listener,
    request_commitment,
)
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.mpps import mpps_create, mpps_set
from simulations.transport.dimse.store import StoreResult, send_instances
from simulations.transport.dimse.worklist import find_worklist, publish_worklist_item
from simulations.transport.errors import SendError
from simulations.transport.mllp import AckError, AsyncMllpClient
from simulations.verification import verify_patient

logger = logging.getLogger(__name__)

TRANSFER_SYNTAX_UIDS = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpegls": JPEGLSLossless}

# Share of orders by care setting when a step asks for "any" setting (a general hospital's mix).
_SETTING_SHARE = {CareSetting.OUTPATIENT: 60, CareSetting.INPATIENT: 25, CareSetting.EMERGENCY: 15}


def worker_id() -> str:
    """``host:pid`` of this process, as recorded in ``Run.worker`` (the reaper checks the pid on this host)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StepFailed(Exception):
    """A step could not do its job; the patient fails with this message and the run carries on."""


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None  # None: YEETER_DATA_DIR/runs/<run id>, decided by run_create
    send: bool = True
    validate_hl7: bool = False
    transfer_syntax: str = "explicit"
    max_instances_per_series: int | None = None
    speed: float = 1.0
    pixel_workers: int = 2
    sending_application: str = "YEETER"
    sending_facility: str = "YEETER_HOSP"
    station_ae_title: str = "MODALITY1"
    mrn_format: str = "MRN{n:07d}"
    # Identifiers (UIDs, accession and order numbers) from the seed too, as an earlier run with that seed had
    # them; by default they come from the run's own id, so two runs never share a UID (runsim --replay-ids).
    replay_ids: bool = False
    # Endpoint kinds served by built-in receivers started for this run (none given for them).
    builtin_kinds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["output_dir"] = str(self.output_dir) if self.output_dir else None
        data["builtin_kinds"] = list(self.builtin_kinds)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunOptions":
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["output_dir"] = Path(values["output_dir"]) if values.get("output_dir") else None
        values["builtin_kinds"] = tuple(values.get("builtin_kinds", ()))
        return cls(**values)


@dataclass
class PatientContext:
    """The spec's ``run_context`` for one patient story."""

    index: int
    row: RunPatient
    rng: random.Random
    ids: random.Random | None = None  # identifiers' stream (mint_order): the run id's, or the seed's on replay
    pps_started_at: dt.datetime | None = None  # the MPPS start, which the images carry too
    patient: Patient | None = None
    exam: ExamInfo | None = None
    selection: Selection | None = None
    order: Order | None = None
    files: PatientFiles | None = None
    pixel_seed: int = 0
    mpps_uid: str = ""
    study: Any = None  # generators.dicom.StudyResult
    report: Report | None = None  # built once (for the ORU^R01 and the report documents alike)
    store_results: list[StoreResult] = field(default_factory=list)


class SimulationRunner:
    """Executes one :class:`~simulations.models.Run`."""

    def __init__(self, run: Run, *, endpoints: EndpointSet, options: RunOptions, recorder: EventRecorder,
                 cancel: asyncio.Event | None = None) -> None:
        self.run = run
        self.steps: list[Step] = parse_steps(run.steps)
        self.endpoints = endpoints
        self.options = options
        self.recorder = recorder
        self.cancel = cancel or asyncio.Event()
        self.run_dir = options.output_dir
        self._mllp: dict[tuple[str, int], AsyncMllpClient] = {}
        self._pool: PixelPool | None = None
        self._pool_lock = asyncio.Lock()
        self.commit_listener: CommitmentListener | None = None
        self.step_seconds: dict[str, float] = defaultdict(float)
        self.counters: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self._handlers = {
            StepType.REGISTER_PATIENT: self.handle_register_patient,
            StepType.GENERATE_HL7: self.handle_generate_hl7,
            StepType.SEND_HL7: self.handle_send_hl7,
            StepType.SEND_DMWL: self.handle_send_dmwl,
            StepType.MPPS_IN_PROGRESS: self.handle_mpps_in_progress,
            StepType.GENERATE_DICOM: self.handle_generate_dicom,
            StepType.SEND_DICOM: self.handle_send_dicom,
            StepType.STORAGE_COMMIT: self.handle_storage_commit,
            StepType.VERIFY_PACS: self.handle_verify_pacs,
            StepType.MPPS_COMPLETED: self.handle_mpps_completed,
            StepType.SEND_REPORT: self.handle_send_report,
            StepType.CANCEL_ORDER: self.handle_cancel_order,
            StepType.WAIT: self.handle_wait,
        }

    # -- the run -----------------------------------------------------------------------------
    async def execute(self) -> Run:
        run = self.run
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run.status = Run.Status.RUNNING
        run.started_at = run.heartbeat_at = timezone.now()
        run.output_dir = str(self.run_dir)
        run.worker = worker_id()
        await sync_to_async(run.save)(update_fields=["status", "started_at", "output_dir", "worker", "heartbeat_at"])
        rows = await sync_to_async(self._create_rows)()
        await self.recorder.emit(EventType.RUN_STARTED,
                                 f"Run started: {run.patient_count} patient(s), concurrency {run.concurrency}, "
                                 f"seed {run.seed}", payload={"endpoints": self.endpoints.describe(),
                                                             "send": self.options.send})
        watchers = [asyncio.create_task(self._watch_cancel()), asyncio.create_task(self._heartbeat())]
        semaphore = asyncio.Semaphore(run.concurrency)
        aborted = True
        try:
            await self._start_commit_listener()
            try:
                # A task group: an error escaping one patient cancels the others instead of leaving
                # them running behind a run already recorded as broken.
                async with asyncio.TaskGroup() as group:
                    await self._arrivals(rows, semaphore, started, group)
            except BaseExceptionGroup as exc:
                raise exc.exceptions[0] from None
            aborted = False
        finally:
            for task in watchers:
                task.cancel()
            # Aborted (an error or a second Ctrl-C): do not wait for studies still being generated.
            await self._close(kill=aborted)
        await self._finish(time.perf_counter() - started)
        return run

    def _create_rows(self) -> list[RunPatient]:
        RunPatient.objects.filter(run=self.run).delete()
        return RunPatient.objects.bulk_create(
            [RunPatient(run=self.run, index=i) for i in range(self.run.patient_count)]
        )

    async def _arrivals(self, rows: list[RunPatient], semaphore: asyncio.Semaphore, t0: float,
                        group: asyncio.TaskGroup) -> None:
        """Start each patient when it arrives: all at once, or as a Poisson process of ``rate_per_hour``
        (time scaled by the speed factor). The rate is re-read from the run every second, so a change
        (the simulator page's rate control) applies to the next arrivals: the gap being waited is
        redrawn at the new rate (exponential gaps are memoryless) and the change is an event."""
        if self.run.arrival != "poisson" or not self.run.rate_per_hour:
            for row in rows:
                group.create_task(self._patient(row, 0.0, semaphore, t0))
            return
        rng = random.Random(f"{self.run.seed}/arrivals")
        rate = self.run.rate_per_hour
        for i, row in enumerate(rows):
            remaining = rng.expovariate(rate / 3600.0) / self.options.speed if i else 0.0
            while remaining > 0 and await self._sleep(min(remaining, 1.0)):
                remaining -= 1.0
                current = await sync_to_async(
                    lambda: Run.objects.filter(pk=self.run.pk).values_list("rate_per_hour", flat=True).first()
                )()
                if current and current != rate:
                    await self.recorder.emit(EventType.RATE_CHANGED, f"Arrival rate changed from {rate:g} to "
                                             f"{current:g} patients per hour", payload={"from": rate, "to": current})
                    rate = self.run.rate_per_hour = current
                    remaining = rng.expovariate(rate / 3600.0) / self.options.speed
            group.create_task(self._patient(row, 0.0, semaphore, t0))

    async def _heartbeat(self) -> None:
        """Tell the world this process still executes the run (``Run.heartbeat_at``); a run whose
        heartbeat stops is abandoned by ``reap_runs``. A run ended elsewhere meanwhile is stopped."""
        from django.conf import settings

        interval = settings.YEETER["HEARTBEAT_SECONDS"]
        while True:
            await asyncio.sleep(interval)
            beating = await sync_to_async(
                lambda: Run.objects.filter(pk=self.run.pk, status=Run.Status.RUNNING).update(
                    heartbeat_at=timezone.now())
            )()
            if not beating:
                logger.warning("run %s was ended by another process; stopping it here", self.run.pk)
                self.cancel.set()
                return

    async def _watch_cancel(self) -> None:
        """Cancellation from elsewhere (API, admin) arrives as a flag on the run row."""
        while not self.cancel.is_set():
            await asyncio.sleep(0.5)
            flagged = await sync_to_async(
                lambda: Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists()
            )()
            if flagged:
                self.cancel.set()

    async def _finish(self, elapsed: float) -> None:
        run = self.run
        statuses = await sync_to_async(
            lambda: Counter(RunPatient.objects.filter(run=run).values_list("status", flat=True))
        )()
        passed, failed = statuses.get("passed", 0), statuses.get("failed", 0)
        cancelled = statuses.get("cancelled", 0) + statuses.get("pending", 0)
        if self.cancel.is_set():
            run.status = Run.Status.CANCELLED
        elif failed:
            run.status = Run.Status.FAILED
        else:
            run.status = Run.Status.SUCCEEDED
        generated = self.counters["instances_generated"]
        mb = self.counters["bytes_generated"] / 1e6
        run.summary = {
            "patients": run.patient_count, "passed": passed, "failed": failed, "cancelled": cancelled,
            "hl7_messages": self.counters["hl7_sent"], "acks": dict(self.acks),
            "worklist_published": self.counters["worklist_published"],
            "worklist_found": self.counters["worklist_found"],
            "mpps": self.counters["mpps_sent"],
            "instances_generated": generated, "instances_stored": self.counters["instances_stored"],
            "instances_failed": self.counters["instances_failed"], "megabytes": round(mb, 2),
            "committed": self.counters["committed"], "reports": self.counters["reports"],
            "verified": self.counters["verified"], "duration_s": round(elapsed, 3),
            "patients_per_minute": round(passed / elapsed * 60, 2) if elapsed else 0.0,
            "instances_per_second": round(generated / elapsed, 1) if elapsed else 0.0,
            "megabytes_per_second": round(mb / elapsed, 2) if elapsed else 0.0,
            "step_seconds": {k: round(v, 3) for k, v in sorted(self.step_seconds.items())},
        }
        run.finished_at = timezone.now()
        # Conditional: a run another process already ended (the reaper took it for dead) keeps that end.
        ended_here = await sync_to_async(
            lambda: Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
                status=run.status, summary=run.summary, finished_at=run.finished_at)
        )()
        if not ended_here:
            await sync_to_async(run.refresh_from_db)()
            return
        kind = EventType.RUN_CANCELLED if run.status == Run.Status.CANCELLED else EventType.RUN_FINISHED
        await self.recorder.emit(kind, f"Run {run.status}: {passed} passed, {failed} failed, {cancelled} cancelled "
                                       f"in {elapsed:.1f} s", payload=run.summary,
                                 level="info" if run.status == Run.Status.SUCCEEDED else "warning")

    async def _start_commit_listener(self) -> None:
        """The run's listener for commitment reports on a new association (PS3.4 J.3.3); runs of this
        process on the same address share it (reports are told apart by Transaction UID)."""
        where = self.endpoints.commit_listen
        if where is None or not self.options.send or not any(s.type == StepType.STORAGE_COMMIT for s in self.steps):
            return
        try:
            self.commit_listener = await asyncio.to_thread(partial(acquire_listener, ae_title=where.ae_title,
                                                                   host=where.host, port=where.port))
        except OSError as exc:
            raise OSError(f"cannot listen for Storage Commitment reports on {where}: {exc}") from None

    async def _close(self, *, kill: bool = False) -> None:
        if self.commit_listener is not None:
            listener, self.commit_listener = self.commit_listener, None
            await asyncio.to_thread(release_listener, listener)
        if self._pool is not None:
            if kill:
                self._pool.kill_workers()
            else:
                self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._mllp.values():
            try:
                await client.close()
            except OSError:
                pass  # closing a broken connection on the way out: nothing left to tell it

    # -- one patient story ------------------------------------------------------------------
    async def _patient(self, row: RunPatient, offset: float, semaphore: asyncio.Semaphore, t0: float) -> None:
        delay = offset - (time.perf_counter() - t0)
        if delay > 0 and not await self._sleep(delay):
            await self._set_row(row, status=RunPatient.Status.CANCELLED)
            return
        async with semaphore:
            if self.cancel.is_set():
                await self._set_row(row, status=RunPatient.Status.CANCELLED)
                return
            ids_basis = self.run.seed if self.options.replay_ids else self.run.pk
            ctx = PatientContext(index=row.index, row=row, rng=random.Random(f"{self.run.seed}/{row.index}"),
                                 ids=random.Random(f"{ids_basis}/{row.index}/ids"))
            await self._set_row(row, status=RunPatient.Status.RUNNING, started_at=timezone.now())
            current: Step | None = None
            try:
                await self._plan(ctx)
                for step in self.steps:
                    if self.cancel.is_set():
                        await self._set_row(row, status=RunPatient.Status.CANCELLED, finished_at=timezone.now())
                        return
                    current = step
                    began = time.perf_counter()
                    try:
                        await self._handlers[step.type](step, ctx)
                    finally:
                        self.step_seconds[step.type.value] += time.perf_counter() - began
                    # a wait interrupted by cancellation ends the story
                    if step.wait_after and not await self._sleep(step.wait_after / self.options.speed):
                        await self._set_row(row, status=RunPatient.Status.CANCELLED, finished_at=timezone.now())
                        return
                current = None
                await self._verify(ctx)
            except (StepFailed, SendError, CatalogLookupError, HL7ValidationError) as exc:
                await self._fail(ctx, current, getattr(exc, "step_label", ""), str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must fail one patient loudly, not the whole run
                logger.exception("patient %s of run %s failed unexpectedly", row.index, self.run.pk)
                await self._fail(ctx, current, "", f"internal error: {type(exc).__name__}: {exc}")

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless cancelled; False when the run was cancelled meanwhile."""
        try:
            await asyncio.wait_for(self.cancel.wait(), timeout=seconds)
            return False
        except TimeoutError:
            return True

    async def _set_row(self, row: RunPatient, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(row, key, value)
        await sync_to_async(RunPatient.objects.filter(pk=row.pk).update)(**fields)

    async def _fail(self, ctx: PatientContext, step: Step | None, where: str, message: str) -> None:
        where = where or (step.label if step is not None else "")
        reason = f"{where}: {message}" if where else message
        if step is not None:
            await self._emit(ctx, EventType.STEP_FAILED, f"{step.label} failed: {message}", step, level="error")
        await self.recorder.emit(EventType.PATIENT_FAILED, f"Patient {ctx.index + 1} failed: {reason}",
                                 patient_pk=ctx.row.pk, patient_index=ctx.index, level="error",
                                 payload={"reason": reason})
        await self._set_row(ctx.row, status=RunPatient.Status.FAILED, error=reason, finished_at=timezone.now())

    async def _emit(self, ctx: PatientContext, type: str, message: str, step: Step | None = None,
                    level: str = "info", **payload: Any) -> None:
        await self.recorder.emit(type, message, patient_pk=ctx.row.pk, patient_index=ctx.index, step=step,
                                 level=level, payload=payload)

    # -- planning: exam, patient, identity ---------------------------------------------------
    def _order_step(self) -> Step:
        # parse_steps refuses a scenario without one; a bare next() here once raised StopIteration
        # into a Future from a worker thread, and the run hung "running" for good.
        for step in self.steps:
            if step.type == StepType.GENERATE_HL7:
                return step
        raise StepFailed("the scenario has no GENERATE_HL7 step to plan the order from")

    def _select_exam(self, params: dict, ctx: PatientContext, patient_age: int | None,
                     patient_sex: str | None) -> Selection:
        """EXAMGEN-4.0 priorities: explicit exam id, then CPT code, then weighted random with constraints."""
        factory = ExamFactory(ctx.rng, seed=self.run.seed)
        if "exam_id" in params:
            return factory.select(exam_id=params["exam_id"])
        if "cpt_code" in params:
            return factory.select(cpt_code=params["cpt_code"])
        setting = params.get("setting", CareSetting.OUTPATIENT.value)
        return factory.select(filters=ExamFilters(
            modality=params.get("modality"), body_part=params.get("body_part"),
            setting=None if setting == "any" else setting, laterality=params.get("laterality"),
            patient_age=patient_age, patient_sex=patient_sex))

    def _plan_sync(self, ctx: PatientContext, now: dt.datetime) -> None:
        close_old_connections()
        step = self._order_step()
        params = step.params
        pinned_sex = Sex(params["sex"]) if "sex" in params else None
        pinned_age = params.get("age")
        # The exam is chosen first (weights are real department volumes) and the patient is then
        # generated to satisfy its constraints, unless the scenario pins sex or age.
        selection = self._select_exam(params, ctx, pinned_age, pinned_sex.value if pinned_sex else None)
        exam = selection.exam.to_info()
        self._guard_demographics(exam, pinned_sex, pinned_age)
        sex = pinned_sex or exam.required_sex
        min_age = pinned_age if pinned_age is not None else exam.min_age
        max_age = pinned_age if pinned_age is not None else exam.max_age
        patient = generate_patient(ctx.rng, today=now.date(), sex=sex, min_age=min_age, max_age=max_age,
                                   mrn_format=self.options.mrn_format, issuer=self.options.sending_facility)
        self._guard_demographics(exam, patient.sex, patient.age)
        indication = self._indication(params, exam, ctx, patient)
        setting = self._setting(params, exam, ctx)
        priority = Priority[params["priority"]] if "priority" in params else None
        order = mint_order(exam=exam, patient=patient, indication=indication, rng=ctx.rng, now=now,
                           setting=setting, priority=priority,
                           station_ae_title=params.get("station_ae_title", self.options.station_ae_title),
                           facility=self.options.sending_facility, ids=ctx.ids)
        ctx.selection, ctx.exam, ctx.patient, ctx.order = selection, exam, patient, order
        ctx.pixel_seed = ctx.rng.getrandbits(63)
        ctx.mpps_uid = order.mpps_uid
        ctx.files = PatientFiles.for_order(self.run_dir, ctx.index, order.accession_number)
        ctx.files.write_json("order.json", identity_json(order))

    @staticmethod
    def _guard_demographics(exam: ExamInfo, sex: Sex | str | None, age: int | None) -> None:
        """The spec's validation guards: the patient must satisfy the exam's constraints."""
        if sex is not None and exam.required_sex is not None and sex != exam.required_sex:
            raise StepFailed(f"Exam {exam.id} requires sex={exam.required_sex.value}, but patient is {Sex(sex).value}")
        if age is not None and exam.min_age is not None and age < exam.min_age:
            raise StepFailed(f"Exam {exam.id} requires min_age={exam.min_age}, but patient is {age}")
        if age is not None and exam.max_age is not None and age > exam.max_age:
            raise StepFailed(f"Exam {exam.id} requires max_age={exam.max_age}, but patient is {age}")

    @staticmethod
    def _indication(params: dict, exam: ExamInfo, ctx: PatientContext, patient: Patient) -> Indication:
        given = params.get("indication")
        if isinstance(given, dict):
            return Indication(text=given["text"], icd10=given["icd10"])
        if isinstance(given, str):
            # Free text without a code: R69 "Illness, unspecified" is the honest ICD-10-CM code for it.
            return Indication(text=given, icd10="R69")
        return generate_indication(exam, ctx.rng, patient)

    @staticmethod
    def _setting(params: dict, exam: ExamInfo, ctx: PatientContext) -> CareSetting:
        wanted = params.get("setting")
        if wanted and wanted != "any":
            return CareSetting(wanted)
        choices = [s for s in _SETTING_SHARE if s in exam.care_settings] or list(exam.care_settings)
        if wanted == "any":
            return ctx.rng.choices(choices, weights=[_SETTING_SHARE.get(s, 1) for s in choices])[0]
        return CareSetting.OUTPATIENT if CareSetting.OUTPATIENT in choices else choices[0]

    async def _plan(self, ctx: PatientContext) -> None:
        now = self._now()
        try:
            await sync_to_async(self._plan_sync)(ctx, now)
        except (CatalogLookupError, StepFailed, ValueError) as exc:
            err = StepFailed(str(getattr(exc, "message", exc)))
            err.step_label = self._order_step().label  # type: ignore[attr-defined]
            raise err from exc
        order = ctx.order
        assert order is not None
        await self._set_row(
            ctx.row, exam_id=order.exam.id, exam_code=order.exam.id, exam_name=order.exam.name,
            modality=order.exam.modality.value, cpt_code=order.exam.primary_code.code,
            patient_id=order.patient.mrn, patient_name=order.patient.name.dicom,
            accession_number=order.accession_number, study_instance_uid=order.study_instance_uid)
        await self._emit(ctx, EventType.PATIENT_STARTED,
                         f"Patient {ctx.index + 1}: {order.patient.name.dicom} ({order.patient.mrn}, "
                         f"{order.patient.sex.value}, {order.patient.age} y), {order.setting.value}",
                         patient_id=order.patient.mrn, accession=order.accession_number)

    @staticmethod
    def _now() -> dt.datetime:
        return timezone.localtime().replace(tzinfo=None, microsecond=0)

    async def _exchange(self, peer: DicomPeer, fn, *args, **kwargs):
        """A short blocking DIMSE exchange in a thread, with a watchdog: a peer (or library) that
        hangs fails the step after a few network timeouts instead of stalling the run forever."""
        limit = max(3 * peer.timeout, 30.0)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout=limit)
        except TimeoutError:
            raise StepFailed(f"no answer from {peer} within {limit:g} s") from None

    # -- step handlers -----------------------------------------------------------------------
    def _hl7_target(self, step: Step) -> HL7Target | None:
        return self.endpoints.get("hl7", step.params.get("endpoint"))  # type: ignore[return-value]

    def _hl7_config(self, step: Step) -> HL7Config:
        target = self._hl7_target(step)
        if target is None:
            return HL7Config(sending_application=self.options.sending_application,
                             sending_facility=self.options.sending_facility)
        return target.config(sending_application=self.options.sending_application,
                             sending_facility=self.options.sending_facility)

    def _control_id(self, ctx: PatientContext, kind: str) -> str:
        # MSH-10: unique per message and per run (reproducible with replay_ids), never the accession number.
        return f"Y{ctx.ids.getrandbits(52):013X}{kind}"[:20]

    def _check_hl7(self, message: str, step: Step) -> None:
        if self.options.validate_hl7:
            try:
                validate_hl7(message)
            except HL7ValidationError as exc:
                raise StepFailed(f"the built message fails strict HL7 validation: {exc}") from exc

    async def _send_hl7(self, step: Step, ctx: PatientContext, message: str, what: str) -> None:
        target = self._hl7_target(step)
        if not self.options.send or target is None:
            await self._emit(ctx, EventType.STEP_SKIPPED, f"{what} not sent (sending is off)", step)
            return
        client = self._mllp.get((target.host, target.port))
        if client is None:
            client = AsyncMllpClient(target.host, target.port, connect_timeout=target.connect_timeout,
                                     read_timeout=target.timeout, retries=2, ssl_context=target.ssl_context())
            self._mllp[(target.host, target.port)] = client
        try:
            ack = await client.send(message)
        except AckError as exc:
            self.counters["hl7_sent"] += 1
            self.acks[exc.ack.code] += 1
            await self._emit(ctx, EventType.HL7_SENT, f"{what} sent to {target}: ACK {exc.ack.code}", step,
                             level="error", ack_code=exc.ack.code, ack=exc.ack.raw)
            raise
        self.counters["hl7_sent"] += 1
        self.acks[ack.code] += 1
        await self._emit(ctx, EventType.HL7_SENT, f"{what} sent to {target}: ACK {ack.code}", step,
                         ack_code=ack.code, control_id=ack.control_id, latency_ms=round(ack.latency_s * 1000, 2),
                         ack=ack.raw)

    async def handle_register_patient(self, step: Step, ctx: PatientContext) -> None:
        """ADT^A04 (outpatient/emergency registration) or ADT^A01 (inpatient admission), IHE RAD-1."""
        order = ctx.order
        message = build_adt(order, config=self._hl7_config(step), now=self._now(), control_id=self._control_id(ctx, "A"))
        self._check_hl7(message, step)
        ctx.files.write_text("adt.hl7", message)
        trigger = "A01" if order.setting == CareSetting.INPATIENT else "A04"
        await self._send_hl7(step, ctx, message, f"ADT^{trigger}")

    async def handle_generate_hl7(self, step: Step, ctx: PatientContext) -> None:
        """Bind the ExamSpec (reported as an event) and build the ORM^O01 new order, IHE RAD-2/RAD-4."""
        order, selection = ctx.order, ctx.selection
        exam = order.exam
        await self._emit(
            ctx, EventType.EXAM_BOUND,
            f"Bound exam {exam.id} \"{exam.name}\" ({exam.modality.value}, CPT {exam.primary_code.code}) "
            f"by {selection.strategy}", step,
            exam_id=exam.id, name=exam.name, modality=exam.modality.value, body_part=exam.body_part,
            laterality=exam.laterality.value, cpt=exam.primary_code.code, strategy=selection.strategy,
            candidates=selection.candidates, candidate_count=selection.candidate_count,
            series=len(exam.series), instances=exam.instance_count, accession=order.accession_number,
            study_instance_uid=order.study_instance_uid,
            indication={"text": order.indication.text, "icd10": order.indication.icd10})
        message = build_orm(order, config=self._hl7_config(self._first(StepType.SEND_HL7) or step), now=self._now(),
                            control_id=self._control_id(ctx, "O"))
        self._check_hl7(message, step)
        ctx.files.write_text("orm.hl7", message)
        await self._emit(ctx, EventType.HL7_BUILT, f"ORM^O01 built for accession {order.accession_number}", step)

    def _first(self, step_type: StepType) -> Step | None:
        return next((s for s in self.steps if s.type == step_type), None)

    async def handle_send_hl7(self, step: Step, ctx: PatientContext) -> None:
        await self._send_hl7(step, ctx, ctx.files.read_text("orm.hl7"), "ORM^O01")

    async def handle_send_dmwl(self, step: Step, ctx: PatientContext) -> None:
        """Publish the worklist item (built-in MWL SCP and/or a worklist folder), then verify it is
        visible with a C-FIND by accession number (IHE RAD-5)."""
        order = ctx.order
        ds = build_worklist_item(order)
        ctx.files.write_dataset("worklist.json", ds)
        published: list[str] = []
        if self.endpoints.builtin_worklist:
            await sync_to_async(publish_worklist_entry)(
                accession_number=order.accession_number, dataset=ds, modality=order.exam.modality.value,
                station_ae_title=order.station_ae_title, scheduled_at=order.scheduled_at, patient=ctx.row)
            published.append("built-in worklist")
        folder = self.endpoints.get("worklist_folder", step.params.get("endpoint"))
        if folder is not None:
            path = await asyncio.to_thread(publish_worklist_item, ds, Path(folder))
            published.append(str(path))
        self.counters["worklist_published"] += 1
        await self._emit(ctx, EventType.WORKLIST_PUBLISHED,
                         f"Worklist entry {order.sps_id} ({order.exam.modality.value} for "
                         f"{order.station_ae_title}) published to " + (", ".join(published) or "nowhere"),
                         step, published=published)
        peer = self.endpoints.get("mwl", step.params.get("endpoint") if not folder else None)
        if not step.params.get("verify", True) or peer is None or not self.options.send:
            return
        query = query_dataset(AccessionNumber=order.accession_number)
        found = await self._exchange(peer, find_worklist, peer, query, timeout=peer.timeout)
        for _ in range(12):  # a RIS turns the order into an item a moment after its ACK: ask again for ~3 s
            if found or self.cancel.is_set():
                break
            await asyncio.sleep(0.25)
            found = await self._exchange(peer, find_worklist, peer, query, timeout=peer.timeout)
        if not found:
            raise StepFailed(f"the worklist entry for accession {order.accession_number} is not visible at {peer}")
        ctx.files.write_dataset("worklist-found.json", found[0])
        self.counters["worklist_found"] += 1
        await self._emit(ctx, EventType.WORKLIST_FOUND,
                         f"Worklist entry found at {peer} by C-FIND ({len(found)} match)", step, matches=len(found))

    def _dicom_peer(self, kind: str, step: Step) -> DicomPeer | None:
        return self.endpoints.get(kind, step.params.get("endpoint"))  # type: ignore[return-value]

    async def _set_worklist_status(self, ctx: PatientContext, status: str) -> None:
        if self.endpoints.builtin_worklist:
            await sync_to_async(WorklistEntry.objects.filter(patient=ctx.row).update)(status=status)

    async def handle_mpps_in_progress(self, step: Step, ctx: PatientContext) -> None:
        """MPPS N-CREATE IN PROGRESS (IHE RAD-6)."""
        order = ctx.order
        ctx.pps_started_at = self._now()
        ds = build_mpps_in_progress(order, mpps_uid=ctx.mpps_uid, started_at=ctx.pps_started_at,
                                    station_ae_title=order.station_ae_title)
        ctx.files.write_dataset("mpps-create.json", ds)
        await self._set_worklist_status(ctx, WorklistEntry.Status.IN_PROGRESS)
        peer = self._dicom_peer("mpps", step)
        if not self.options.send or peer is None:
            await self._emit(ctx, EventType.STEP_SKIPPED, "MPPS N-CREATE not sent (sending is off)", step)
            return
        status = await self._exchange(peer, mpps_create, peer, ds, mpps_uid=ctx.mpps_uid)
        self.counters["mpps_sent"] += 1
        await self._emit(ctx, EventType.MPPS_SENT, f"MPPS IN PROGRESS created at {peer} (status 0x{status:04X})",
                         step, mpps_uid=ctx.mpps_uid, status=status, state="IN PROGRESS")

    async def _process_pool(self) -> PixelPool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = PixelPool(self.options.pixel_workers)
            return self._pool

    async def handle_generate_dicom(self, step: Step, ctx: PatientContext) -> None:
        """Generate the study from the ExamSpec's series protocols (never anything else) in the pool."""
        order = ctx.order
        if order is None or ctx.exam is None:
            raise StepFailed("DICOM generation requires ExamSpec in run_context. "
                             "Ensure a GENERATE_HL7 step runs before GENERATE_DICOM.")
        ts = TRANSFER_SYNTAX_UIDS[step.params.get("transfer_syntax", self.options.transfer_syntax)]
        limit = step.params.get("max_instances_per_series", self.options.max_instances_per_series)
        pool = await self._process_pool()
        now, documents = self._now(), DocumentChoice.from_params(step.params)
        report = self._report(ctx, documents_time(order, now)) if documents.needs_report else None
        job = partial(write_study_with_documents, order, self.run_dir, seed=ctx.pixel_seed, transfer_syntax=ts,
                      now=now, max_instances_per_series=limit, pps_started_at=ctx.pps_started_at,
                      documents=documents, report=report, doc_seed=document_seed(ctx.pixel_seed,
                                                                                 order.study_instance_uid))
        study = await asyncio.get_running_loop().run_in_executor(pool, job)
        ctx.study = study
        self.counters["instances_generated"] += study.instance_count
        self.counters["bytes_generated"] += study.bytes
        await self._set_row(ctx.row, instances=study.instance_count, bytes=study.bytes)
        await self._emit(ctx, EventType.DICOM_GENERATED,
                         f"Generated {study.instance_count} DICOM instances across {len(study.series)} series for "
                         f"{order.exam.name}", step, instances=study.instance_count, bytes=study.bytes,
                         series=[{"number": s.number, "description": s.description, "instances": s.instance_count,
                                  "modality": s.modality} for s in study.series],
                         study_instance_uid=study.study_instance_uid)

    def _study_files(self, ctx: PatientContext) -> list[Path]:
        return sorted(Path(ctx.study.study_dir).glob("*.dcm"))

    async def handle_send_dicom(self, step: Step, ctx: PatientContext) -> None:
        """C-STORE the study: one association per study (or N in parallel), per-instance status."""
        peer = self._dicom_peer("storage", step)
        if not self.options.send or peer is None:
            await self._emit(ctx, EventType.STEP_SKIPPED, "Study not sent (sending is off)", step)
            return
        files = self._study_files(ctx)
        try:
            results = await asyncio.to_thread(send_instances, peer, files,
                                              associations=step.params.get("associations", 1), retries=1)
        except SendError as exc:
            # The association failed mid-study: record what the peer did store before failing the step.
            ctx.store_results = list(getattr(exc, "results", []) or [])
            stored = sum(1 for r in ctx.store_results if r.stored)
            unsent = len(getattr(exc, "unsent", []) or [])
            self.counters["instances_stored"] += stored
            self.counters["instances_failed"] += len(files) - stored
            await self._emit(ctx, EventType.DICOM_STORED, f"Stored {stored}/{len(files)} instances at {peer} before "
                             f"the association failed ({unsent} not sent)", step, level="error", stored=stored,
                             failed=len(files) - stored, unsent=unsent)
            raise
        ctx.store_results = results
        stored = [r for r in results if r.stored]
        failed = [r for r in results if not r.stored]
        self.counters["instances_stored"] += len(stored)
        self.counters["instances_failed"] += len(failed)
        statuses = Counter(f"0x{r.status:04X}" for r in results if r.status is not None)
        await self._emit(ctx, EventType.DICOM_STORED,
                         f"Stored {len(stored)}/{len(results)} instances at {peer}", step,
                         level="info" if not failed else "error", stored=len(stored), failed=len(failed),
                         statuses=dict(statuses))
        if failed:
            first = failed[0]
            raise StepFailed(f"{len(failed)} of {len(results)} instances were not stored at {peer}; first: "
                             f"{first.sop_instance_uid} {first.message}")

    async def handle_storage_commit(self, step: Step, ctx: PatientContext) -> None:
        """Storage commitment request for the instances stored (IHE RAD-10)."""
        peer = self._dicom_peer("commitment", step) or self._dicom_peer("storage", step)
        if not self.options.send or peer is None:
            await self._emit(ctx, EventType.STEP_SKIPPED, "Storage commitment not requested (sending is off)", step)
            return
        instances = [(r.sop_class_uid, r.sop_instance_uid) for r in ctx.store_results if r.stored]
        if not instances:
            raise StepFailed("nothing was stored, so there is nothing to commit")
        timeout = step.params.get("timeout", peer.timeout)
        job = partial(request_commitment, peer, instances, transaction_uid=new_uid(ctx.ids), timeout=timeout,
                      listener=self.commit_listener)
        try:
            # the watchdog leaves the report its whole timeout, plus the association's own
            result = await asyncio.wait_for(asyncio.to_thread(job), timeout=timeout + 3 * peer.timeout)
        except TimeoutError:
            raise StepFailed(f"no answer from {peer} within {timeout + 3 * peer.timeout:g} s") from None
        except CommitmentNotOffered as exc:
            if step.params.get("required", False):
                raise
            await self._emit(ctx, EventType.STEP_SKIPPED, f"Storage commitment skipped: {exc}; the images were "
                             "stored, the patient goes on (set \"required\": true to fail instead)", step,
                             level="warning", peer=str(peer))
            return
        self.counters["committed"] += len(result.committed)
        await self._emit(ctx, EventType.COMMITMENT,
                         f"Storage commitment at {peer}: {len(result.committed)} committed, {len(result.failed)} "
                         f"failed (report on {'the same' if result.same_association else 'a new'} association)",
                         step, level="info" if not result.failed else "error", committed=len(result.committed),
                         failed=len(result.failed), same_association=result.same_association)
        if result.failed:
            raise StepFailed(f"{len(result.failed)} instance(s) were not committed by {peer}")

    async def handle_verify_pacs(self, step: Step, ctx: PatientContext) -> None:
        """C-FIND the PACS (Study Root, study and series level), or search it over QIDO-RS when the step
        names a DICOMweb base URL, and compare with what was sent (:mod:`simulations.pacs_verify`); a
        difference fails the patient naming the attribute."""
        qido = step.params.get("qido")
        peer = (self._dicom_peer("storage", step) if step.params.get("endpoint")
                else self.endpoints.get("query") or self.endpoints.get("storage"))
        if not self.options.send or (peer is None and not qido):
            await self._emit(ctx, EventType.STEP_SKIPPED, "PACS not queried (sending is off)", step)
            return
        stored = [Path(r.path) for r in ctx.store_results if r.stored]
        if not stored:
            raise StepFailed("nothing was stored, so there is nothing to look for in the PACS")
        sent = await asyncio.to_thread(SentStudy.from_files, stored)
        timeout = peer.timeout if peer is not None else 30.0
        if qido:
            target, job = qido, partial(verify_pacs_qido, qido, sent, timeout=timeout)
        else:
            target, job = str(peer), partial(verify_pacs, peer, sent, timeout=timeout)
        try:  # a few searches, each bounded by the timeout: the watchdog only catches a hang
            result = await asyncio.wait_for(asyncio.to_thread(job), timeout=max(4 * timeout, 30.0))
        except TimeoutError:
            raise StepFailed(f"no answer from {target} within {max(4 * timeout, 30.0):g} s") from None
        ctx.files.write_json("pacs-verify.json", result.to_json())
        if not result.ok:
            for difference in result.differences[:20]:
                await self._emit(ctx, EventType.MISMATCH, f"PACS {target}: {difference}", step, level="error",
                                 **difference.to_json())
            shown = "; ".join(str(d) for d in result.differences[:3])
            more = f" (and {len(result.differences) - 3} more)" if len(result.differences) > 3 else ""
            raise StepFailed(f"{target} does not hold the study as sent: {shown}{more}")
        await self._emit(ctx, EventType.PACS_VERIFIED,
                         f"PACS {target} holds the study as sent: {len(sent.series)} series, {sent.instance_count} "
                         "instances, patient, accession and description match", step,
                         series=len(sent.series), instances=sent.instance_count)

    def _performed_series(self, ctx: PatientContext) -> list[PerformedSeries]:
        """The series and instances actually sent (or generated, when nothing was sent).

        No header is read: files are named ``<series>_<instance>.dcm`` by the generator, the store
        results carry the SOP UIDs of what was sent, and the file meta group those of what was not.
        """
        if ctx.study is None:
            return []
        sent = [(Path(r.path), r.sop_class_uid, r.sop_instance_uid) for r in ctx.store_results if r.stored]
        if not ctx.store_results:
            for path in self._study_files(ctx):
                meta = read_file_meta_info(path)
                sent.append((path, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID))
        specs = {s.number: s for s in ctx.exam.series}
        records = {s.number: s for s in ctx.study.series}
        by_series: dict[int, PerformedSeries] = {}
        for path, sop_class, sop_instance in sorted(sent):
            number = int(path.name.split("_", 1)[0])
            record = records[number]
            document = is_document_series(record)  # Protocol Name is Type 1: a document series names itself
            series = by_series.setdefault(number, PerformedSeries(
                series_instance_uid=record.series_instance_uid, description=record.description,
                protocol_name=record.description if document else specs[number].protocol_name if number in specs
                else "", instances=[], non_image=document))
            series.instances.append((str(sop_class), str(sop_instance)))
        return [by_series[n] for n in sorted(by_series)]

    async def handle_mpps_completed(self, step: Step, ctx: PatientContext) -> None:
        """MPPS N-SET COMPLETED/DISCONTINUED with the performed series (IHE RAD-7)."""
        status = step.params.get("status", "COMPLETED")
        series = await asyncio.to_thread(self._performed_series, ctx)
        ds = build_mpps_completed(ctx.order, ended_at=self._now(), series=series, status=status)
        ctx.files.write_dataset("mpps-set.json", ds)
        await self._set_worklist_status(ctx, WorklistEntry.Status(status))
        peer = self._dicom_peer("mpps", step)
        if not self.options.send or peer is None:
            await self._emit(ctx, EventType.STEP_SKIPPED, "MPPS N-SET not sent (sending is off)", step)
            return
        result = await self._exchange(peer, mpps_set, peer, ctx.mpps_uid, ds)
        self.counters["mpps_sent"] += 1
        await self._emit(ctx, EventType.MPPS_SENT,
                         f"MPPS {status} at {peer} with {len(series)} series, "
                         f"{sum(len(s.instances) for s in series)} instances (status 0x{result:04X})", step,
                         mpps_uid=ctx.mpps_uid, status=result, state=status)

    async def handle_send_report(self, step: Step, ctx: PatientContext) -> None:
        """ORU^R01 final report fitting the exam (IHE RAD-... results)."""
        now = self._now()
        report = self._report(ctx, now)
        message = build_oru(ctx.order, report, config=self._hl7_config(step), now=now,
                            control_id=self._control_id(ctx, "R"))
        self._check_hl7(message, step)
        ctx.files.write_text("oru.hl7", message)
        self.counters["reports"] += 1
        await self._send_hl7(step, ctx, message, "ORU^R01")

    @staticmethod
    def _report(ctx: PatientContext, signed_at: dt.datetime) -> Report:
        """The patient's one report (ORU^R01, text SR, PDF), built by whichever step needs it first."""
        if ctx.report is None:
            ctx.report = build_report(ctx.order, ctx.rng, now=signed_at)
        return ctx.report

    async def handle_cancel_order(self, step: Step, ctx: PatientContext) -> None:
        """ORM^O01 with ORC-1 CA (IHE RAD-13); the worklist entry is discontinued."""
        message = build_orm(ctx.order, config=self._hl7_config(step), now=self._now(),
                            control_id=self._control_id(ctx, "C"), order_control="CA")
        self._check_hl7(message, step)
        ctx.files.write_text("cancel.hl7", message)
        await self._set_worklist_status(ctx, WorklistEntry.Status.DISCONTINUED)
        await self._send_hl7(step, ctx, message, "ORM^O01 cancel")

    async def handle_wait(self, step: Step, ctx: PatientContext) -> None:
        await self._sleep(step.params.get("seconds", 0) / self.options.speed)

    # -- verification ------------------------------------------------------------------------
    async def _verify(self, ctx: PatientContext) -> None:
        study_dir = Path(ctx.study.study_dir) if ctx.study is not None else None
        result = await asyncio.to_thread(verify_patient, ctx.files, study_dir)
        await self._set_row(ctx.row, verification=result.to_json())
        if not result.ok:
            for m in result.mismatches[:20]:
                await self._emit(ctx, EventType.MISMATCH,
                                 f"{m['artifact']}: {m['field']} is {m['actual']!r}, expected {m['expected']!r}",
                                 level="error", **m)
            raise StepFailed(f"verification failed: {result.summary()}")
        self.counters["verified"] += 1
        await self._emit(ctx, EventType.VERIFIED, f"Verified: {result.summary()}", checked=result.checked)
        await self._set_row(ctx.row, status=RunPatient.Status.PASSED, finished_at=timezone.now())
        await self._emit(ctx, EventType.PATIENT_PASSED, f"Patient {ctx.index + 1} passed")
