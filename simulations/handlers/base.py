"""What every step handler works with: the run's context (shared by the patients of one process) and the
patient's story (its plan, the messages and study it made so far, its counters).

A handler is ``async def handle(step, story, run) -> None``: it reads the plan and what earlier steps put
in the story, does its protocol's work, writes its file (the files are the record, not the hand-off),
records events and counters, and raises :class:`StepFailed` when it cannot do its job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from generators.hl7 import HL7Config, HL7ValidationError
from generators.hl7 import validate as validate_hl7
from generators.reports import Report, build_report
from simulations.artifacts import PatientFiles
from simulations.endpoints import EndpointSet, HL7Target
from simulations.events import EventRecorder
from simulations.models import RunPatient, WorklistEntry
from simulations.options import RunOptions
from simulations.plan import PatientPlan
from simulations.pool import PixelPool
from simulations.stats import RunStats
from simulations.steps import EndpointKind, Step
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.commitment import CommitmentListener
from simulations.transport.mllp import AsyncMllpClient

logger = logging.getLogger(__name__)


class StepFailed(Exception):
    """A step could not do its job; the patient fails with this message and the run carries on."""


def now() -> dt.datetime:
    """The local wall-clock time messages carry (naive, whole seconds)."""
    return timezone.localtime().replace(tzinfo=None, microsecond=0)


@dataclass
class RunContext:
    """One run as the patients of this process see it: where to send, the options, the shared clients."""

    run_pk: Any
    steps: list[Step]
    endpoints: EndpointSet
    options: RunOptions
    recorder: EventRecorder
    cancel: asyncio.Event
    commit_listener: CommitmentListener | None = None
    # Generate pixels in a thread of this process, not a process pool: a Celery worker process executes one
    # patient at a time (the workers are the parallelism) and may not be allowed children of its own.
    pixel_threads: bool = False
    _mllp: dict[tuple[str, int], AsyncMllpClient] = field(default_factory=dict)
    _pool: PixelPool | ThreadPoolExecutor | None = None
    _pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def sending(self) -> bool:
        return self.options.send

    def first(self, step_type) -> Step | None:
        return next((s for s in self.steps if s.type == step_type), None)

    def peer(self, kind: EndpointKind, step: Step) -> DicomPeer | None:
        return self.endpoints.get(kind.value, step.endpoint)  # type: ignore[return-value]

    def hl7_target(self, step: Step) -> HL7Target | None:
        return self.endpoints.get(EndpointKind.HL7.value, step.endpoint)  # type: ignore[return-value]

    def hl7_config(self, step: Step) -> HL7Config:
        target = self.hl7_target(step)
        names = {"sending_application": self.options.sending_application,
                 "sending_facility": self.options.sending_facility}
        return target.config(**names) if target is not None else HL7Config(**names)

    def check_hl7(self, message: str) -> None:
        if self.options.validate_hl7:
            try:
                validate_hl7(message)
            except HL7ValidationError as exc:
                raise StepFailed(f"the built message fails strict HL7 validation: {exc}") from exc

    def mllp_client(self, target: HL7Target) -> AsyncMllpClient:
        client = self._mllp.get((target.host, target.port))
        if client is None:
            client = AsyncMllpClient(target.host, target.port, connect_timeout=target.connect_timeout,
                                     read_timeout=target.timeout, retries=2, ssl_context=target.ssl_context())
            self._mllp[(target.host, target.port)] = client
        return client

    async def pixel_pool(self) -> PixelPool | ThreadPoolExecutor:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = (ThreadPoolExecutor(1, thread_name_prefix="pixels") if self.pixel_threads
                              else PixelPool(self.options.pixel_workers, niceness=settings.YEETER["PIXEL_NICE"]))
            return self._pool

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless cancelled; False when the run was cancelled meanwhile."""
        try:
            await asyncio.wait_for(self.cancel.wait(), timeout=seconds)
            return False
        except TimeoutError:
            return True

    async def exchange(self, peer: DicomPeer, fn, *args, **kwargs):
        """A short blocking DIMSE exchange in a thread, with a watchdog: a peer (or library) that hangs
        fails the step after a few network timeouts instead of stalling the run forever."""
        limit = max(3 * peer.timeout, 30.0)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout=limit)
        except TimeoutError:
            raise StepFailed(f"no answer from {peer} within {limit:g} s") from None

    async def close(self, *, kill: bool = False) -> None:
        """Stop the pixel pool (``kill``: without waiting for studies being generated) and the HL7 clients."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if kill and isinstance(pool, PixelPool):
                pool.kill_workers()
            else:
                pool.shutdown(wait=True, cancel_futures=True)
        for client in self._mllp.values():
            try:
                await client.close()
            except OSError:
                pass  # closing a broken connection on the way out: nothing left to tell it
        self._mllp.clear()


@dataclass
class Story:
    """One patient's story as its steps unfold: the plan, then what each step made."""

    plan: PatientPlan
    row: RunPatient
    files: PatientFiles
    run: RunContext
    stats: RunStats = field(default_factory=RunStats)
    messages: dict[str, str] = field(default_factory=dict)  # "adt", "orm", "oru", "cancel": as sent
    pps_started_at: dt.datetime | None = None  # the MPPS start, which the images carry too
    study: Any = None  # generators.dicom.StudyResult: what GENERATE_DICOM wrote
    store_results: list = field(default_factory=list)  # transport.dimse.store.StoreResult per instance sent
    report: Report | None = None  # built once (ORU^R01 and the report documents alike)

    @property
    def redone(self) -> bool:
        """A worker took this story up again (its first worker was lost): what it sent may be there already."""
        return self.row.attempts > 1

    @property
    def order(self):
        return self.plan.order

    def control_id(self, kind: str) -> str:
        """MSH-10 of the story's message ``kind``: unique per message and run, the same when redone."""
        return f"Y{self.plan.ids(f'msh10/{kind}').getrandbits(52):013X}{kind}"[:20]

    def report_for(self, signed_at: dt.datetime) -> Report:
        """The patient's one report (ORU^R01, text SR, PDF), built by whichever step needs it first."""
        if self.report is None:
            self.report = build_report(self.order, self.plan.story_rng(), now=signed_at)
        return self.report

    async def emit(self, type: str, message: str, step: Step | None = None, level: str = "info",
                   **payload: Any) -> None:
        await self.run.recorder.emit(type, message, patient_pk=self.row.pk, patient_index=self.plan.index,
                                     step=step, level=level, payload=payload)

    async def set_row(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self.row, key, value)
        await sync_to_async(RunPatient.objects.filter(pk=self.row.pk).update)(**values)

    async def set_worklist_status(self, status: str) -> None:
        if self.run.endpoints.builtin_worklist:
            await sync_to_async(WorklistEntry.objects.filter(patient=self.row).update)(status=status)
