"""STORAGE_COMMIT (IHE RAD-10: the report on the same association or, as most PACS send it, on a new one
to the run's listener) and VERIFY_PACS (C-FIND or QIDO-RS: the PACS holds the study as sent)."""

from __future__ import annotations

import asyncio
from functools import partial

from generators.uids import new_uid
from simulations.events import EventType
from simulations.handlers.base import RunContext, StepFailed, Story
from simulations.pacs_verify import SentStudy, verify_pacs, verify_pacs_qido
from simulations.steps import EndpointKind, Step
from simulations.transport.dimse.commitment import CommitmentNotOffered, request_commitment


async def storage_commit(step: Step, story: Story, run: RunContext) -> None:
    peer = run.peer(EndpointKind.COMMITMENT, step) or run.peer(EndpointKind.STORAGE, step)
    if not run.sending or peer is None:
        await story.emit(EventType.STEP_SKIPPED, "Storage commitment not requested (sending is off)", step)
        return
    instances = [(r.sop_class_uid, r.sop_instance_uid) for r in story.store_results if r.stored]
    if not instances:
        raise StepFailed("nothing was stored, so there is nothing to commit")
    timeout = step.spec.timeout or peer.timeout
    job = partial(request_commitment, peer, instances, transaction_uid=new_uid(story.plan.ids("commitment")),
                  timeout=timeout, listener=run.commit_listener)
    try:
        # the watchdog leaves the report its whole timeout, plus the association's own
        result = await asyncio.wait_for(asyncio.to_thread(job), timeout=timeout + 3 * peer.timeout)
    except TimeoutError:
        raise StepFailed(f"no answer from {peer} within {timeout + 3 * peer.timeout:g} s") from None
    except CommitmentNotOffered as exc:
        if step.spec.required:
            raise
        await story.emit(EventType.STEP_SKIPPED, f"Storage commitment skipped: {exc}; the images were stored, the "
                         "patient goes on (set \"required\": true to fail instead)", step, level="warning",
                         peer=str(peer))
        return
    story.stats.committed += len(result.committed)
    await story.emit(EventType.COMMITMENT,
                     f"Storage commitment at {peer}: {len(result.committed)} committed, {len(result.failed)} failed "
                     f"(report on {'the same' if result.same_association else 'a new'} association)", step,
                     level="info" if not result.failed else "error", committed=len(result.committed),
                     failed=len(result.failed), same_association=result.same_association)
    if result.failed:
        raise StepFailed(f"{len(result.failed)} instance(s) were not committed by {peer}")


async def verify_pacs_step(step: Step, story: Story, run: RunContext) -> None:
    """C-FIND the PACS (Study Root, study and series level), or search it over QIDO-RS when the step names a
    DICOMweb base URL, and compare with what was sent (:mod:`simulations.pacs_verify`); a difference fails
    the patient naming the attribute."""
    qido = step.spec.qido
    peer = (run.peer(EndpointKind.STORAGE, step) if step.endpoint
            else run.endpoints.get(EndpointKind.QUERY.value) or run.endpoints.get(EndpointKind.STORAGE.value))
    if not run.sending or (peer is None and not qido):
        await story.emit(EventType.STEP_SKIPPED, "PACS not queried (sending is off)", step)
        return
    stored = [r.path for r in story.store_results if r.stored]
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
    story.files.write_json("pacs-verify.json", result.to_json())
    if not result.ok:
        for difference in result.differences[:20]:
            await story.emit(EventType.MISMATCH, f"PACS {target}: {difference}", step, level="error",
                             **difference.to_json())
        shown = "; ".join(str(d) for d in result.differences[:3])
        more = f" (and {len(result.differences) - 3} more)" if len(result.differences) > 3 else ""
        raise StepFailed(f"{target} does not hold the study as sent: {shown}{more}")
    await story.emit(EventType.PACS_VERIFIED,
                     f"PACS {target} holds the study as sent: {len(sent.series)} series, {sent.instance_count} "
                     "instances, patient, accession and description match", step,
                     series=len(sent.series), instances=sent.instance_count)
