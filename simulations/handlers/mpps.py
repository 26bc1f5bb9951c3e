"""MPPS: N-CREATE IN PROGRESS (IHE RAD-6) and N-SET COMPLETED/DISCONTINUED with the series performed (RAD-7)."""

from __future__ import annotations

from generators.records import InstanceRecord
from generators.mpps import PerformedSeries, build_mpps_completed, build_mpps_in_progress
from simulations.documents import is_document_series
from simulations.events import EventType
from simulations.handlers.base import RunContext, Story, now
from simulations.models import WorklistEntry
from simulations.steps import EndpointKind, Step
from simulations.transport.dimse.mpps import mpps_create, mpps_set
from simulations.transport.errors import SendError

DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4.2.1.13: an N-CREATE of an instance that exists


async def in_progress(step: Step, story: Story, run: RunContext) -> None:
    order = story.order
    story.pps_started_at = now()
    ds = build_mpps_in_progress(order, mpps_uid=order.mpps_uid, started_at=story.pps_started_at,
                                station_ae_title=order.station_ae_title)
    story.files.write_dataset("mpps-create.json", ds)
    await story.set_worklist_status(WorklistEntry.Status.IN_PROGRESS)
    peer = run.peer(EndpointKind.MPPS, step)
    if not run.sending or peer is None:
        await story.emit(EventType.STEP_SKIPPED, "MPPS N-CREATE not sent (sending is off)", step)
        return
    try:
        status = await run.exchange(peer, mpps_create, peer, ds, mpps_uid=order.mpps_uid)
    except SendError as exc:
        # A story redone (its worker was lost) after its N-CREATE got through: the MPPS exists, as planned.
        if not (story.redone and getattr(exc, "status", None) == DUPLICATE_SOP_INSTANCE):
            raise
        await story.emit(EventType.MPPS_SENT, f"MPPS IN PROGRESS already created at {peer} by the story's earlier "
                         "try (status 0x0111, duplicate SOP instance)", step, mpps_uid=order.mpps_uid,
                         status=DUPLICATE_SOP_INSTANCE, state="IN PROGRESS")
        return
    story.stats.mpps_sent += 1
    await story.emit(EventType.MPPS_SENT, f"MPPS IN PROGRESS created at {peer} (status 0x{status:04X})", step,
                     mpps_uid=order.mpps_uid, status=status, state="IN PROGRESS")


def performed_series(story: Story) -> list[PerformedSeries]:
    """The series and instances sent (or generated, when nothing was sent), from the study's instance records."""
    if story.study is None:
        return []
    instances: list[InstanceRecord] = list(story.study.instances)
    if story.store_results:
        stored = {r.sop_instance_uid for r in story.store_results if r.stored}
        instances = [i for i in instances if i.sop_instance_uid in stored]
    specs = {s.number: s for s in story.order.exam.series}
    records = {s.number: s for s in story.study.series}
    by_series: dict[int, PerformedSeries] = {}
    for instance in instances:
        record = records[instance.series_number]
        document = is_document_series(record)  # Protocol Name is Type 1: a document series names itself
        series = by_series.setdefault(instance.series_number, PerformedSeries(
            series_instance_uid=record.series_instance_uid, description=record.description,
            protocol_name=record.description if document else specs[record.number].protocol_name
            if record.number in specs else "", instances=[], non_image=document))
        series.instances.append((instance.sop_class_uid, instance.sop_instance_uid))
    return [by_series[n] for n in sorted(by_series)]


async def completed(step: Step, story: Story, run: RunContext) -> None:
    order, status = story.order, step.spec.status
    series = performed_series(story)
    ds = build_mpps_completed(order, ended_at=now(), series=series, status=status)
    story.files.write_dataset("mpps-set.json", ds)
    await story.set_worklist_status(WorklistEntry.Status(status))
    peer = run.peer(EndpointKind.MPPS, step)
    if not run.sending or peer is None:
        await story.emit(EventType.STEP_SKIPPED, "MPPS N-SET not sent (sending is off)", step)
        return
    result = await run.exchange(peer, mpps_set, peer, order.mpps_uid, ds)
    story.stats.mpps_sent += 1
    await story.emit(EventType.MPPS_SENT, f"MPPS {status} at {peer} with {len(series)} series, "
                     f"{sum(len(s.instances) for s in series)} instances (status 0x{result:04X})", step,
                     mpps_uid=order.mpps_uid, status=result, state=status)
