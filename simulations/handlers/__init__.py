"""The step handlers, one small unit per protocol (:mod:`.base` says what a handler is)."""

from __future__ import annotations

from simulations.handlers import commitment, hl7, images, mpps, worklist
from simulations.handlers.base import RunContext, StepFailed, Story
from simulations.steps import Step, StepType


async def wait(step: Step, story: Story, run: RunContext) -> None:
    await run.sleep(step.spec.seconds / run.options.speed)


HANDLERS = {
    StepType.REGISTER_PATIENT: hl7.register_patient,
    StepType.GENERATE_HL7: hl7.generate_hl7,
    StepType.SEND_HL7: hl7.send_hl7,
    StepType.SEND_DMWL: worklist.send_dmwl,
    StepType.MPPS_IN_PROGRESS: mpps.in_progress,
    StepType.GENERATE_DICOM: images.generate_dicom,
    StepType.SEND_DICOM: images.send_dicom,
    StepType.STORAGE_COMMIT: commitment.storage_commit,
    StepType.VERIFY_PACS: commitment.verify_pacs_step,
    StepType.MPPS_COMPLETED: mpps.completed,
    StepType.SEND_REPORT: hl7.send_report,
    StepType.CANCEL_ORDER: hl7.cancel_order,
    StepType.WAIT: wait,
}

__all__ = ["HANDLERS", "RunContext", "StepFailed", "Story"]
