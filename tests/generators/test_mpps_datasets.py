"""MPPS datasets (PS3.4 F.7.2 Table F.7.2-1, IHE RAD-6/RAD-7): attributes, identity, final state."""

from __future__ import annotations

from pathlib import Path

import datetime as dt

import pytest

from generators.mpps import (
    PerformedSeries,
    build_mpps_completed,
    build_mpps_in_progress,
    performed_procedure_step_id,
)
from generators.terms import CodingScheme, Modality
from generators.types import Code, Order
from generators.worklist import build_worklist_item
from tests.examples import EXAMS, FIXED_NOW, order_for

MPPS_UID = "2.25.123456789012345678901234567890"
STARTED = FIXED_NOW + dt.timedelta(minutes=5)
ENDED = FIXED_NOW + dt.timedelta(minutes=40)
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

# PS3.4 Table F.7.2-1, N-CREATE column: Type 1 and Type 2 attributes (written out here on purpose,
# as an oracle independent of generators.mpps).
N_CREATE_TOP = {
    "ScheduledStepAttributesSequence": 1,
    "PatientName": 2,
    "PatientID": 2,
    "PatientBirthDate": 2,
    "PatientSex": 2,
    "ReferencedPatientSequence": 2,
    "PerformedProcedureStepID": 1,
    "PerformedStationAETitle": 1,
    "PerformedStationName": 2,
    "PerformedLocation": 2,
    "PerformedProcedureStepStartDate": 1,
    "PerformedProcedureStepStartTime": 1,
    "PerformedProcedureStepStatus": 1,
    "PerformedProcedureStepDescription": 2,
    "PerformedProcedureTypeDescription": 2,
    "ProcedureCodeSequence": 2,
    "PerformedProcedureStepEndDate": 2,
    "PerformedProcedureStepEndTime": 2,
    "Modality": 1,
    "StudyID": 2,
    "PerformedProtocolCodeSequence": 2,
    "PerformedSeriesSequence": 2,
}
N_CREATE_SSA = {
    "StudyInstanceUID": 1,
    "ReferencedStudySequence": 2,
    "AccessionNumber": 2,
    "RequestedProcedureID": 2,
    "RequestedProcedureDescription": 2,
    "ScheduledProcedureStepID": 2,
    "ScheduledProcedureStepDescription": 2,
    "ScheduledProtocolCodeSequence": 2,
}
# Attributes PS3.4 Table F.7.2-1 marks "Not allowed" in the N-SET.
NOT_ALLOWED_IN_N_SET = (
    "ScheduledStepAttributesSequence",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "Modality",
    "StudyID",
)


def series_of(order: Order, count: int = 2) -> list[PerformedSeries]:
    return [
        PerformedSeries(
            series_instance_uid=f"2.25.{1000 + n}",
            description=spec.description,
            protocol_name=spec.protocol_name,
            instances=[(MR_IMAGE_STORAGE, f"2.25.{1000 + n}{i}") for i in range(spec.instance_count)],
            retrieve_ae_title="YEETER_PACS",
        )
        for n, spec in enumerate(order.exam.series[:count], start=1)
    ]


@pytest.mark.parametrize("modality", list(EXAMS))
def test_the_n_create_carries_every_type_1_and_type_2_attribute(modality: Modality) -> None:
    ds = build_mpps_in_progress(order_for(modality), mpps_uid=MPPS_UID, started_at=STARTED, station_ae_title="MOD1")
    for keyword, type_ in N_CREATE_TOP.items():
        assert keyword in ds, keyword
        if type_ == 1:
            assert ds[keyword].value, keyword
    (ssa,) = ds.ScheduledStepAttributesSequence
    for keyword, type_ in N_CREATE_SSA.items():
        assert keyword in ssa, keyword
        if type_ == 1:
            assert ssa[keyword].value, keyword
    assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
    assert len(ds.PerformedSeriesSequence) == 0
    assert ds.PerformedProcedureStepEndDate in (None, "")


def test_the_scheduled_step_attributes_reference_exactly_what_the_worklist_offered() -> None:
    order = order_for(Modality.MR)
    wl = build_worklist_item(order)
    wl_sps = wl.ScheduledProcedureStepSequence[0]
    ds = build_mpps_in_progress(order, mpps_uid=MPPS_UID, started_at=STARTED, station_ae_title="MR1")
    ssa = ds.ScheduledStepAttributesSequence[0]
    assert ssa.StudyInstanceUID == wl.StudyInstanceUID == order.study_instance_uid
    assert ssa.AccessionNumber == wl.AccessionNumber
    assert ssa.RequestedProcedureID == wl.RequestedProcedureID
    assert ssa.ScheduledProcedureStepID == wl_sps.ScheduledProcedureStepID
    assert ssa.ScheduledProcedureStepDescription == wl_sps.ScheduledProcedureStepDescription
    assert ssa.ScheduledProtocolCodeSequence == wl_sps.ScheduledProtocolCodeSequence
    assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == (
        wl.PatientName,
        wl.PatientID,
        wl.PatientBirthDate,
        wl.PatientSex,
    )
    assert ds.Modality == wl_sps.Modality == "MR"
    assert ds.ProcedureCodeSequence == wl.RequestedProcedureCodeSequence
    assert ds.PerformedStationAETitle == "MR1"
    assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == ("20261125", "093500")


def test_the_pps_id_fits_sh_and_differs_between_two_performances_of_one_step() -> None:
    first = performed_procedure_step_id(MPPS_UID)
    second = performed_procedure_step_id(MPPS_UID + "1")
    assert len(first) <= 16 and len(second) <= 16
    assert first == performed_procedure_step_id(MPPS_UID)
    assert first != second


def test_the_completed_n_set_lists_each_series_with_the_instances_sent() -> None:
    order = order_for(Modality.MR)
    series = series_of(order)
    ds = build_mpps_completed(order, ended_at=ENDED, series=series)
    assert ds.PerformedProcedureStepStatus == "COMPLETED"
    assert (ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime) == ("20261125", "101000")
    assert len(ds.PerformedSeriesSequence) == 2
    for item, sent in zip(ds.PerformedSeriesSequence, series, strict=True):
        assert item.SeriesInstanceUID == sent.series_instance_uid
        assert item.SeriesDescription == sent.description
        assert item.ProtocolName == sent.protocol_name
        assert item.RetrieveAETitle == "YEETER_PACS"
        assert [(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in item.ReferencedImageSequence] == (
            sent.instances
        )
        assert len(item.ReferencedNonImageCompositeSOPInstanceSequence) == 0
        for keyword in ("PerformingPhysicianName", "OperatorsName"):
            assert keyword in item
    performed = [c.CodeMeaning for c in ds.PerformedProtocolCodeSequence]
    assert performed == [s.protocol_name for s in series]


def test_the_n_set_carries_no_attribute_the_standard_forbids_in_an_n_set() -> None:
    order = order_for(Modality.CT)
    ds = build_mpps_completed(order, ended_at=ENDED, series=series_of(order))
    for keyword in NOT_ALLOWED_IN_N_SET:
        assert keyword not in ds, keyword


def test_a_discontinued_step_carries_its_reason_and_may_have_no_series() -> None:
    order = order_for(Modality.DX)
    # CID 9300 "Incorrect worklist entry selected" (DCM).
    reason = Code("110514", CodingScheme.DCM, "Incorrect worklist entry selected")
    ds = build_mpps_completed(order, ended_at=ENDED, series=[], status="DISCONTINUED", discontinuation_reason=reason)
    assert ds.PerformedProcedureStepStatus == "DISCONTINUED"
    assert len(ds.PerformedSeriesSequence) == 0
    (code,) = ds.PerformedProcedureStepDiscontinuationReasonCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("110514", "DCM")


def test_a_completed_step_without_series_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one performed series"):
        build_mpps_completed(order_for(Modality.MR), ended_at=ENDED, series=[])


def test_a_discontinuation_reason_on_a_completed_step_is_refused() -> None:
    order = order_for(Modality.MR)
    reason = Code("73721", CodingScheme.CPT, "not a reason")
    with pytest.raises(ValueError, match="DISCONTINUED"):
        build_mpps_completed(order, ended_at=ENDED, series=series_of(order), discontinuation_reason=reason)


def test_an_mpps_cannot_end_in_progress() -> None:
    order = order_for(Modality.MR)
    with pytest.raises(ValueError, match="COMPLETED or DISCONTINUED"):
        build_mpps_completed(order, ended_at=ENDED, series=series_of(order), status="IN PROGRESS")


def test_the_mpps_study_id_is_the_one_the_images_carry(tmp_path) -> None:
    import pydicom

    from generators.dicom import write_study

    order = order_for(Modality.US)
    study = write_study(order, tmp_path, seed=1, now=STARTED, max_instances_per_series=1, previews=False)
    image = pydicom.dcmread(next(Path(study.study_dir).glob("*.dcm")), stop_before_pixels=True)
    ds = build_mpps_in_progress(order, mpps_uid=MPPS_UID, started_at=STARTED, station_ae_title="US1")
    assert ds.StudyID == image.StudyID == order.study_id


def test_a_document_series_is_listed_as_non_image_instances_and_names_no_performed_protocol() -> None:
    order = order_for(Modality.CT)
    dose = PerformedSeries(series_instance_uid="2.25.9990", description="Radiation Dose Report",
                           protocol_name="Radiation Dose Report",
                           instances=[("1.2.840.10008.5.1.4.1.1.88.67", "2.25.99901")], non_image=True)
    ds = build_mpps_completed(order, ended_at=STARTED + dt.timedelta(minutes=20), series=[*series_of(order), dose])
    *images, documents = ds.PerformedSeriesSequence
    assert all(s.ReferencedImageSequence and not s.ReferencedNonImageCompositeSOPInstanceSequence for s in images)
    assert list(documents.ReferencedImageSequence) == []  # PS3.3 C.4.15: a document is not an image
    (ref,) = documents.ReferencedNonImageCompositeSOPInstanceSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == ("1.2.840.10008.5.1.4.1.1.88.67", "2.25.99901")
    assert documents.ProtocolName == "Radiation Dose Report"  # Type 1 in the Performed Series Sequence
    assert "Radiation Dose Report" not in {c.CodeMeaning for c in ds.PerformedProtocolCodeSequence}
