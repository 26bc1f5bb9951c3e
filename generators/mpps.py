"""Modality Performed Procedure Step datasets: the N-CREATE (IN PROGRESS) and the final N-SET.

Implements the attribute lists of DICOM PS3.4 Annex F (Table F.7.2-1, N-CREATE / N-SET / final
state requirements) with the modules of PS3.3 C.4.13-C.4.16, as IHE RAD TF-2 RAD-6 "Modality
Procedure Step In Progress" and RAD-7 "Modality Procedure Step Completed/Discontinued" use them.
The scheduled step references (Study Instance UID, accession, requested procedure and SPS IDs)
come from the :class:`~generators.types.Order`, exactly as the worklist item carries them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators.dicom_common import SPECIFIC_CHARACTER_SET, catalog_code_item, dicom_date, dicom_time, set_patient
from generators.types import Code, Order
from generators.vr import clean_dataset, clip
from generators.worklist import protocol_code_item, scheduled_protocol_items

# PS3.3 C.4.14 Performed Procedure Step Status (0040,0252) enumerated values.
IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
DISCONTINUED = "DISCONTINUED"
FINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, DISCONTINUED})
STATUSES: frozenset[str] = frozenset({IN_PROGRESS, COMPLETED, DISCONTINUED})


@dataclass(frozen=True, slots=True)
class PerformedSeries:
    """One series actually acquired: an item of PerformedSeriesSequence (PS3.3 C.4.15)."""

    series_instance_uid: str
    description: str
    protocol_name: str
    # (SOP Class UID, SOP Instance UID) of every instance sent (ReferencedImageSequence).
    instances: list[tuple[str, str]] = field(default_factory=list)
    retrieve_ae_title: str = ""
    # A series of non-image documents (dose SR, KOS, SR, PDF): its instances go in Referenced Non-Image
    # Composite SOP Instance Sequence instead (PS3.3 C.4.15, PS3.4 Table F.7.2-1), and it names no protocol.
    non_image: bool = False


def performed_procedure_step_id(mpps_uid: str) -> str:
    """PerformedProcedureStepID (SH, 16 chars) derived from the MPPS SOP Instance UID.

    Derived from the MPPS instance rather than the SPS, because one SPS can be performed more
    than once (a DISCONTINUED step redone) and each PPS needs its own ID.
    """
    digest = int(hashlib.sha256(mpps_uid.encode("ascii")).hexdigest(), 16)
    return f"PPS{digest % 10**13:013d}"


def build_mpps_in_progress(
    order: Order,
    *,
    started_at: dt.datetime,
    mpps_uid: str | None = None,
    station_ae_title: str,
    performed_station_name: str = "",
    study_id: str = "",
) -> Dataset:
    """The N-CREATE attribute list of an MPPS IN PROGRESS (PS3.4 F.7.2.1, Table F.7.2-1).

    Every Type 1 and Type 2 attribute of the N-CREATE column is present (Type 2 ones empty when
    the modality does not know them yet: end date/time, performed series). The PPS ID is the one minted
    with the order (``order.pps_id``, which the images carry too); ``mpps_uid``, the Affected SOP Instance
    UID the SCU sends in the N-CREATE command, defaults to ``order.mpps_uid`` — another UID (a redone
    step) gets a PPS ID of its own. ``started_at`` must be the start the images carry. ``study_id`` is
    (0020,0010) Study ID of
    the images, Type 2; by default ``order.study_id``, which the images carry too.
    """
    exam = order.exam
    uid = mpps_uid or order.mpps_uid
    pps_id = order.pps_id if uid == order.mpps_uid and order.pps_id else performed_procedure_step_id(uid)

    # Performed Procedure Step Relationship (PS3.3 C.4.13): one item per SPS fulfilled.
    ssa = Dataset()
    ssa.StudyInstanceUID = order.study_instance_uid
    ssa.ReferencedStudySequence = Sequence()
    ssa.AccessionNumber = order.accession_number
    ssa.PlacerOrderNumberImagingServiceRequest = order.placer_order_number
    ssa.FillerOrderNumberImagingServiceRequest = order.filler_order_number
    ssa.RequestedProcedureID = order.requested_procedure_id
    ssa.RequestedProcedureDescription = clip(exam.description)
    ssa.ScheduledProcedureStepID = order.sps_id
    ssa.ScheduledProcedureStepDescription = clip(exam.description)
    ssa.ScheduledProtocolCodeSequence = Sequence(scheduled_protocol_items(exam))

    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.ScheduledStepAttributesSequence = Sequence([ssa])
    set_patient(ds, order.patient)
    ds.ReferencedPatientSequence = Sequence()
    ds.AdmissionID = order.visit_number

    # Performed Procedure Step Information (PS3.3 C.4.14).
    ds.PerformedProcedureStepID = pps_id
    ds.PerformedStationAETitle = station_ae_title
    ds.PerformedStationName = performed_station_name
    ds.PerformedLocation = None
    ds.PerformedProcedureStepStartDate = dicom_date(started_at)
    ds.PerformedProcedureStepStartTime = dicom_time(started_at)
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    ds.PerformedProcedureStepDescription = clip(exam.description)
    ds.PerformedProcedureTypeDescription = clip(exam.name)
    ds.ProcedureCodeSequence = Sequence([catalog_code_item(order.procedure_code)])
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None

    # Image Acquisition Results (PS3.3 C.4.15): protocols as scheduled, no series yet.
    ds.Modality = str(exam.modality)
    ds.StudyID = study_id or order.study_id
    ds.PerformedProtocolCodeSequence = Sequence(scheduled_protocol_items(exam))
    ds.PerformedSeriesSequence = Sequence()
    return clean_dataset(ds)


def performed_series_item(series: PerformedSeries, *, performing: str, operators: str) -> Dataset:
    """A PerformedSeriesSequence item (PS3.4 Table F.7.2-1 / PS3.3 C.4.15)."""
    item = Dataset()
    item.PerformingPhysicianName = performing
    item.ProtocolName = clip(series.protocol_name)
    item.OperatorsName = operators
    item.SeriesInstanceUID = series.series_instance_uid
    item.SeriesDescription = clip(series.description)
    item.RetrieveAETitle = series.retrieve_ae_title
    refs = []
    for sop_class_uid, sop_instance_uid in series.instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class_uid
        ref.ReferencedSOPInstanceUID = sop_instance_uid
        refs.append(ref)
    item.ReferencedImageSequence = Sequence([] if series.non_image else refs)
    item.ReferencedNonImageCompositeSOPInstanceSequence = Sequence(refs if series.non_image else [])
    return item


def build_mpps_completed(
    order: Order,
    *,
    ended_at: dt.datetime,
    series: list[PerformedSeries],
    status: str = COMPLETED,
    discontinuation_reason: Code | None = None,
    operators_name: str = "",
) -> Dataset:
    """The final N-SET modification list: COMPLETED or DISCONTINUED (PS3.4 F.7.2.2, Table F.7.2-1).

    Carries only attributes the N-SET may modify (not the patient, the scheduled step
    attributes, the PPS ID, the station or the start date/time). PS3.4 F.7.2.2.2 final state
    requirements: end date and time are set, and a COMPLETED step lists at least one performed
    series. ``discontinuation_reason`` (a PS3.16 CID 9300 code, IHE RAD-7) fills
    PerformedProcedureStepDiscontinuationReasonCodeSequence and is only allowed with
    DISCONTINUED. Raises ``ValueError`` for a status or combination the standard forbids.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"an MPPS ends COMPLETED or DISCONTINUED, not {status!r}")
    if status == COMPLETED and not series:
        raise ValueError("a COMPLETED MPPS must list at least one performed series (PS3.4 F.7.2.2.2)")
    if discontinuation_reason is not None and status != DISCONTINUED:
        raise ValueError("a discontinuation reason belongs to a DISCONTINUED MPPS only")

    performing = order.performing.name.dicom if order.performing else ""
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = dicom_date(ended_at)
    ds.PerformedProcedureStepEndTime = dicom_time(ended_at)
    ds.ProcedureCodeSequence = Sequence([catalog_code_item(order.procedure_code)])
    # The protocols actually run, once each, in acquisition order.
    protocols = list(dict.fromkeys(s.protocol_name for s in series if not s.non_image))
    ds.PerformedProtocolCodeSequence = Sequence([protocol_code_item(p) for p in protocols])
    ds.PerformedSeriesSequence = Sequence(
        [performed_series_item(s, performing=performing, operators=operators_name) for s in series]
    )
    if discontinuation_reason is not None:
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([catalog_code_item(discontinuation_reason)])
    return clean_dataset(ds)
