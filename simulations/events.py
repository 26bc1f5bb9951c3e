"""Run events: persisted as ``RunEvent`` rows in order, relayed to the run's Channels group and to
in-process listeners (the CLI progress display)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max

from simulations.models import RunEvent

logger = logging.getLogger(__name__)


class EventType:
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    RUN_CANCELLED = "run.cancelled"
    RATE_CHANGED = "run.rate_changed"
    RUN_ERROR = "run.error"  # the run itself broke (not one patient); it ends in status error
    RUN_ABANDONED = "run.abandoned"  # the process executing it is gone
    PATIENT_STARTED = "patient.started"
    PATIENT_PASSED = "patient.passed"
    PATIENT_FAILED = "patient.failed"
    EXAM_BOUND = "exam.bound"
    HL7_BUILT = "hl7.built"
    HL7_SENT = "hl7.sent"
    WORKLIST_PUBLISHED = "worklist.published"
    WORKLIST_FOUND = "worklist.found"
    MPPS_SENT = "mpps.sent"
    DICOM_GENERATED = "dicom.generated"
    DICOM_STORED = "dicom.stored"
    COMMITMENT = "commitment.result"
    REPORT_SENT = "report.sent"
    STEP_SKIPPED = "step.skipped"
    STEP_FAILED = "step.failed"
    VERIFIED = "verification.passed"
    MISMATCH = "verification.mismatch"
    PACS_VERIFIED = "pacs.verified"  # VERIFY_PACS: the PACS holds the study as sent


def group_name(run_id: Any) -> str:
    """The Channels group of a run (group names allow only ASCII alphanumerics, hyphens, periods)."""
    return f"run-{run_id}"


def event_dict(event: RunEvent, patient_number: int | None) -> dict[str, Any]:
    """The one JSON shape of an event: live (Channels, CLI), backlog (WebSocket) and API alike.

    ``patient`` is the patient's number as people see it (``RunPatient.number``, from 1), or None for
    events of the run itself."""
    return {"seq": event.seq, "type": event.type, "level": event.level, "message": event.message,
            "patient": patient_number, "step_index": event.step_index, "step_type": event.step_type,
            "payload": event.payload, "created_at": event.created_at.isoformat()}


class EventRecorder:
    """Gives events their run-wide sequence numbers and writes them where they need to go."""

    def __init__(self, run_id: Any, *, listeners: list[Callable[[dict], None]] | None = None) -> None:
        self.run_id = run_id
        self.listeners = list(listeners or [])
        self._seq: itertools.count | None = None
        self.layer = get_channel_layer()

    async def _next_seq(self) -> int:
        if self._seq is None:
            last = await sync_to_async(
                lambda: RunEvent.objects.filter(run_id=self.run_id).aggregate(m=Max("seq"))["m"]
            )()
            self._seq = itertools.count((last or 0) + 1)
        return next(self._seq)

    async def emit(self, type: str, message: str, *, patient_pk: int | None = None, patient_index: int | None = None,
                   step=None, level: str = RunEvent.Level.INFO, payload: dict | None = None) -> dict:
        seq = await self._next_seq()
        event = await sync_to_async(RunEvent.objects.create)(
            run_id=self.run_id, seq=seq, patient_id=patient_pk,
            step_index=step.index if step is not None else None,
            step_type=step.type.value if step is not None else "",
            type=type, level=level, message=message, payload=payload or {},
        )
        data = event_dict(event, patient_index + 1 if patient_index is not None else None)
        for listener in self.listeners:
            try:
                listener(data)
            except Exception:  # a display problem must never stop a run
                logger.exception("run event listener failed")
        if self.layer is not None:
            try:
                await self.layer.group_send(group_name(self.run_id), {"type": "run.event", "event": data})
            except Exception:  # noqa: BLE001 - the event is persisted; live relay is best effort
                logger.warning("could not relay event %s of run %s to the channel layer", seq, self.run_id,
                               exc_info=True)
        return data
