"""Run events: persisted as ``RunEvent`` rows in order, relayed to the run's Channels group and to
in-process listeners (the CLI progress display)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from simulations.models import RunEvent

logger = logging.getLogger(__name__)


class EventType:
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    RUN_CANCELLED = "run.cancelled"
    RATE_CHANGED = "run.rate_changed"
    RUN_ERROR = "run.error"  # the run itself broke (not one patient); it ends in status error
    RUN_ABANDONED = "run.abandoned"  # the process executing it is gone
    RUN_WAITING = "run.waiting"  # scale-out: no worker has taken the patients due
    PATIENT_STARTED = "patient.started"
    PATIENT_PASSED = "patient.passed"
    PATIENT_FAILED = "patient.failed"
    PATIENT_RETRIED = "patient.retried"  # scale-out: a worker took up a story whose worker stopped answering
    EXAM_BOUND = "exam.bound"
    HL7_BUILT = "hl7.built"
    HL7_SENT = "hl7.sent"
    WORKLIST_PUBLISHED = "worklist.published"
    WORKLIST_FOUND = "worklist.found"
    MPPS_SENT = "mpps.sent"
    DICOM_GENERATED = "dicom.generated"
    DICOM_STORED = "dicom.stored"
    COMMITMENT = "commitment.result"
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


def _next_seq(run_model: Any, run_id: Any) -> int:
    """Increment ``Run.event_seq`` and read it back in one statement (``UPDATE … RETURNING``: SQLite 3.35
    and PostgreSQL), inside the caller's transaction; the row lock it takes orders concurrent writers."""
    meta = run_model._meta
    quote = connection.ops.quote_name
    column = quote(meta.get_field("event_seq").column)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(meta.db_table)} SET {column} = {column} + 1 "
                       f"WHERE {quote(meta.pk.column)} = %s RETURNING {column}",
                       [meta.pk.get_db_prep_value(meta.pk.to_python(run_id), connection)])
        row = cursor.fetchone()
    if row is None:
        raise run_model.DoesNotExist(f"run {run_id} does not exist")
    return int(row[0])


class EventRecorder:
    """Gives events their run-wide sequence numbers and writes them where they need to go.

    The number is allocated in the database (``Run.event_seq``, incremented in the transaction that writes
    the event), so the processes and workers that execute one run's patients never share a number, and a
    patient's events, recorded one after the other, keep their order."""

    def __init__(self, run_id: Any, *, listeners: list[Callable[[dict], None]] | None = None) -> None:
        self.run_id = run_id
        self.listeners = list(listeners or [])
        self.layer = get_channel_layer()

    def _record(self, **values: Any) -> RunEvent:
        from simulations.models import Run

        with transaction.atomic():
            seq = _next_seq(Run, self.run_id)
            return RunEvent.objects.create(run_id=self.run_id, seq=seq, **values)

    async def emit(self, type: str, message: str, *, patient_pk: int | None = None, patient_index: int | None = None,
                   step=None, level: str = RunEvent.Level.INFO, payload: dict | None = None) -> dict:
        event = await sync_to_async(self._record)(
            patient_id=patient_pk, step_index=step.index if step is not None else None,
            step_type=step.type.value if step is not None else "",
            type=type, level=level, message=message, payload=payload or {},
        )
        seq = event.seq
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


# A seq missing between recorded ones (a write still in flight in another process) is waited for this long,
# then skipped (a story redone on another worker removes its earlier events: their numbers stay unused).
HOLE_GRACE_S = 3.0


class InOrder:
    """Hands out recorded events in ``seq`` order, each once, waiting up to :data:`HOLE_GRACE_S` for a
    missing number; the WebSocket tail and :class:`EventTail` (runsim's view of a worker-executed run)."""

    def __init__(self, after: int = 0) -> None:
        self.last_seq = after
        self.hole_since: float | None = None

    def take(self, events: list[dict], *, now: float, final: bool = False) -> list[dict]:
        """The events of ``events`` (sorted by seq, all after ``last_seq``) that may go out now."""
        out: list[dict] = []
        for event in events:
            if event["seq"] != self.last_seq + 1 and not final:
                if self.hole_since is None:
                    self.hole_since = now
                if now - self.hole_since < HOLE_GRACE_S:
                    break  # wait for the missing seq (its write is still in flight)
            self.hole_since = None
            out.append(event)
            self.last_seq = event["seq"]
        return out

    @property
    def waiting(self) -> bool:
        return self.hole_since is not None


def events_after(run_id: Any, after: int, limit: int = 500) -> list[dict]:
    """The run's recorded events with a larger seq, in order, in the one JSON shape (:func:`event_dict`)."""
    rows = RunEvent.objects.filter(run_id=run_id, seq__gt=after).select_related("patient").order_by("seq")[:limit]
    return [event_dict(e, e.patient.number if e.patient is not None else None) for e in rows]


class EventTail:
    """Feeds ``listeners`` (runsim's display) the events other processes record for a run, in order."""

    def __init__(self, run_id: Any, listeners: list[Callable[[dict], None]]) -> None:
        self.run_id = run_id
        self.listeners = listeners
        self.order = InOrder()

    async def poll(self, *, final: bool = False) -> None:
        import time

        while True:
            events = await sync_to_async(events_after)(self.run_id, self.order.last_seq)
            for data in self.order.take(events, now=time.monotonic(), final=final):
                for listener in self.listeners:
                    try:
                        listener(data)
                    except Exception:  # a display problem must never stop a run
                        logger.exception("run event listener failed")
            if len(events) < 500 or self.order.waiting:
                return
