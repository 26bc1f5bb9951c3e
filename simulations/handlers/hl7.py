"""The HL7 steps: ADT^A04/A01 registration (IHE RAD-1), the ORM^O01 order (RAD-2/4) built and sent, the
ORU^R01 report and the ORM^O01 cancel (RAD-13), over MLLP with the ACK checked (MSA-1, MSA-2)."""

from __future__ import annotations

from generators.hl7 import build_adt, build_orm, build_oru
from generators.terms import CareSetting
from simulations.events import EventType
from simulations.handlers.base import RunContext, Story, now
from simulations.models import WorklistEntry
from simulations.steps import Step, StepType
from simulations.transport.mllp import AckError


async def send(step: Step, story: Story, run: RunContext, message: str, what: str) -> None:
    """Send one message of the story to the step's HL7 peer and record the ACK; an AR/AE ACK fails the step."""
    target = run.hl7_target(step)
    if not run.sending or target is None:
        await story.emit(EventType.STEP_SKIPPED, f"{what} not sent (sending is off)", step)
        return
    try:
        ack = await run.mllp_client(target).send(message)
    except AckError as exc:
        story.stats.hl7_sent += 1
        story.stats.acks[exc.ack.code] += 1
        await story.emit(EventType.HL7_SENT, f"{what} sent to {target}: ACK {exc.ack.code}", step, level="error",
                         ack_code=exc.ack.code, ack=exc.ack.raw)
        raise
    story.stats.hl7_sent += 1
    story.stats.acks[ack.code] += 1
    await story.emit(EventType.HL7_SENT, f"{what} sent to {target}: ACK {ack.code}", step, ack_code=ack.code,
                     control_id=ack.control_id, latency_ms=round(ack.latency_s * 1000, 2), ack=ack.raw)


def _keep(story: Story, run: RunContext, kind: str, file_name: str, message: str) -> str:
    run.check_hl7(message)
    story.messages[kind] = message
    story.files.write_text(file_name, message)
    return message


async def register_patient(step: Step, story: Story, run: RunContext) -> None:
    """ADT^A04 (outpatient/emergency registration) or ADT^A01 (inpatient admission), IHE RAD-1."""
    order = story.order
    message = _keep(story, run, "adt", "adt.hl7", build_adt(order, config=run.hl7_config(step), now=now(),
                                                               control_id=story.control_id("A")))
    trigger = "A01" if order.setting == CareSetting.INPATIENT else "A04"
    await send(step, story, run, message, f"ADT^{trigger}")


async def generate_hl7(step: Step, story: Story, run: RunContext) -> None:
    """Report the exam the plan bound (an ``exam.bound`` event) and build the ORM^O01 new order."""
    plan, order = story.plan, story.order
    exam = order.exam
    await story.emit(
        EventType.EXAM_BOUND,
        f"Bound exam {exam.id} \"{exam.name}\" ({exam.modality.value}, CPT {exam.primary_code.code}) by {plan.strategy}",
        step, exam_id=exam.id, name=exam.name, modality=exam.modality.value, body_part=exam.body_part,
        laterality=exam.laterality.value, cpt=exam.primary_code.code, strategy=plan.strategy,
        candidates=list(plan.candidates), candidate_count=plan.candidate_count, series=len(exam.series),
        instances=exam.instance_count, accession=order.accession_number, study_instance_uid=order.study_instance_uid,
        indication={"text": order.indication.text, "icd10": order.indication.icd10})
    # MSH-5/6 name the peer the order goes to: the SEND_HL7 step's
    config = run.hl7_config(run.first(StepType.SEND_HL7) or step)
    _keep(story, run, "orm", "orm.hl7", build_orm(order, config=config, now=now(), control_id=story.control_id("O")))
    await story.emit(EventType.HL7_BUILT, f"ORM^O01 built for accession {order.accession_number}", step)


async def send_hl7(step: Step, story: Story, run: RunContext) -> None:
    await send(step, story, run, story.messages["orm"], "ORM^O01")


async def send_report(step: Step, story: Story, run: RunContext) -> None:
    """ORU^R01 final report fitting the exam."""
    signed = now()
    message = _keep(story, run, "oru", "oru.hl7", build_oru(story.order, story.report_for(signed),
                                                               config=run.hl7_config(step), now=signed,
                                                               control_id=story.control_id("R")))
    story.stats.reports += 1
    await send(step, story, run, message, "ORU^R01")


async def cancel_order(step: Step, story: Story, run: RunContext) -> None:
    """ORM^O01 with ORC-1 CA (IHE RAD-13); the worklist entry is discontinued."""
    message = _keep(story, run, "cancel", "cancel.hl7",
                    build_orm(story.order, config=run.hl7_config(step), now=now(), control_id=story.control_id("C"),
                              order_control="CA"))
    await story.set_worklist_status(WorklistEntry.Status.DISCONTINUED)
    await send(step, story, run, message, "ORM^O01 cancel")
