"""GENERATE_DICOM (the study from the exam's series protocols, in the pixel pool) and SEND_DICOM (C-STORE,
one association per study or N in parallel, a status per instance)."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial

from simulations.documents import document_seed, documents_time, write_study_with_documents
from simulations.events import EventType
from simulations.handlers.base import RunContext, StepFailed, Story, now
from simulations.options import TRANSFER_SYNTAX_UIDS
from simulations.steps import EndpointKind, Step
from simulations.transport.dimse.store import send_instances
from simulations.transport.errors import SendError


async def generate_dicom(step: Step, story: Story, run: RunContext) -> None:
    plan, order, spec = story.plan, story.order, step.spec
    ts = TRANSFER_SYNTAX_UIDS[spec.transfer_syntax or run.options.transfer_syntax]
    limit = spec.max_instances_per_series or run.options.max_instances_per_series
    pool = await run.pixel_pool()
    made_at, documents = now(), spec.documents
    report = story.report_for(documents_time(order, made_at)) if documents.needs_report else None
    job = partial(write_study_with_documents, order, run.options.output_dir, seed=plan.pixel_seed, transfer_syntax=ts,
                  now=made_at, max_instances_per_series=limit, pps_started_at=story.pps_started_at,
                  documents=documents, report=report,
                  doc_seed=document_seed(plan.pixel_seed, order.study_instance_uid))
    study = await asyncio.get_running_loop().run_in_executor(pool, job)
    story.study = study
    story.stats.instances_generated += study.instance_count
    story.stats.bytes_generated += study.bytes
    await story.set_row(instances=study.instance_count, bytes=study.bytes)
    await story.emit(EventType.DICOM_GENERATED,
                     f"Generated {study.instance_count} DICOM instances across {len(study.series)} series for "
                     f"{order.exam.name}", step, instances=study.instance_count, bytes=study.bytes,
                     series=[{"number": s.number, "description": s.description, "instances": s.instance_count,
                              "modality": s.modality} for s in study.series],
                     study_instance_uid=study.study_instance_uid)


async def send_dicom(step: Step, story: Story, run: RunContext) -> None:
    peer = run.peer(EndpointKind.STORAGE, step)
    if not run.sending or peer is None:
        await story.emit(EventType.STEP_SKIPPED, "Study not sent (sending is off)", step)
        return
    refs = list(story.study.instances)  # the generator's records: nothing is read back
    try:
        results = await asyncio.to_thread(send_instances, peer, refs, associations=step.spec.associations, retries=1)
    except SendError as exc:
        # The association failed mid-study: record what the peer did store before failing the step.
        story.store_results = list(getattr(exc, "results", []) or [])
        stored = sum(1 for r in story.store_results if r.stored)
        unsent = len(getattr(exc, "unsent", []) or [])
        story.stats.instances_stored += stored
        story.stats.instances_failed += len(refs) - stored
        await story.emit(EventType.DICOM_STORED, f"Stored {stored}/{len(refs)} instances at {peer} before the "
                         f"association failed ({unsent} not sent)", step, level="error", stored=stored,
                         failed=len(refs) - stored, unsent=unsent)
        raise
    story.store_results = results
    failed = [r for r in results if not r.stored]
    story.stats.instances_stored += len(results) - len(failed)
    story.stats.instances_failed += len(failed)
    statuses = Counter(f"0x{r.status:04X}" for r in results if r.status is not None)
    await story.emit(EventType.DICOM_STORED, f"Stored {len(results) - len(failed)}/{len(results)} instances at {peer}",
                     step, level="info" if not failed else "error", stored=len(results) - len(failed),
                     failed=len(failed), statuses=dict(statuses))
    if failed:
        first = failed[0]
        raise StepFailed(f"{len(failed)} of {len(results)} instances were not stored at {peer}; first: "
                         f"{first.sop_instance_uid} {first.message}")
