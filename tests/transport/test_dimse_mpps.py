"""MPPS over DIMSE (PS3.4 Annex F): our N-CREATE/N-SET SCU against our MPPS SCP's state machine.

dcmtk ships no MPPS SCU, so both ends are pynetdicom here; the SCP is a real loopback server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE

from generators.mpps import PerformedSeries, build_mpps_completed, build_mpps_in_progress
from generators.terms import CodingScheme, Modality
from generators.types import Code, Order
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.mpps import (
    DUPLICATE_SOP_INSTANCE,
    INVALID_ATTRIBUTE_VALUE,
    MISSING_ATTRIBUTE,
    NO_SUCH_OBJECT_INSTANCE,
    PROCESSING_FAILURE,
    MppsEvent,
    MppsScp,
    mpps_create,
    mpps_set,
)
from simulations.transport.dimse.worklist import WorklistScp
from simulations.transport.errors import SendError
from tests.conftest import free_port
from tests.examples import FIXED_NOW, order_for

ORDER = order_for(Modality.MR)
UID = "2.25.314159265358979323846264338327950288"
STARTED = FIXED_NOW + dt.timedelta(minutes=2)
ENDED = FIXED_NOW + dt.timedelta(minutes=37)
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def performed(order: Order = ORDER) -> list[PerformedSeries]:
    return [
        PerformedSeries(
            series_instance_uid=f"2.25.77{n}",
            description=spec.description,
            protocol_name=spec.protocol_name,
            instances=[(MR_IMAGE_STORAGE, f"2.25.77{n}0{i}") for i in range(spec.instance_count)],
        )
        for n, spec in enumerate(order.exam.series, start=1)
    ]


def in_progress(uid: str = UID) -> Dataset:
    return build_mpps_in_progress(ORDER, mpps_uid=uid, started_at=STARTED, station_ae_title="MR_SCANNER1")


def completed() -> Dataset:
    return build_mpps_completed(ORDER, ended_at=ENDED, series=performed())


def discontinued() -> Dataset:
    reason = Code("110513", CodingScheme.DCM, "Discontinued for unspecified reason")
    return build_mpps_completed(
        ORDER, ended_at=ENDED, series=[], status="DISCONTINUED", discontinuation_reason=reason
    )


@pytest.fixture
def events() -> list[MppsEvent]:
    return []


@pytest.fixture
def scp(events: list[MppsEvent]) -> Iterator[MppsScp]:
    server = MppsScp(port=free_port(), on_event=events.append)
    server.start()
    yield server
    server.stop()


def status_of(call: Callable[[], object]) -> int | str | None:
    """Run ``call`` expecting a SendError and return its DIMSE status."""
    with pytest.raises(SendError) as raised:
        call()
    return raised.value.status


def test_it_records_an_in_progress_step_and_then_its_completion(scp: MppsScp, events: list[MppsEvent]) -> None:
    assert mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10) == 0x0000
    assert scp.instances[UID].status == "IN PROGRESS"
    assert mpps_set(scp.peer, UID, completed(), timeout=10) == 0x0000

    instance = scp.instances[UID]
    assert instance.status == "COMPLETED"
    ds = instance.dataset
    # What the N-CREATE set is kept, what the N-SET set is merged in.
    assert ds.ScheduledStepAttributesSequence[0].StudyInstanceUID == ORDER.study_instance_uid
    assert ds.ScheduledStepAttributesSequence[0].AccessionNumber == ORDER.accession_number
    assert str(ds.PatientName) == "O'BRIEN-NÚÑEZ^ZOË^ANNE"
    assert ds.PerformedProcedureStepEndTime == "100700"
    series = ds.PerformedSeriesSequence
    assert [s.SeriesInstanceUID for s in series] == [p.series_instance_uid for p in performed()]
    assert [len(s.ReferencedImageSequence) for s in series] == [spec.instance_count for spec in ORDER.exam.series]
    assert [op for op, _, _ in instance.history] == ["N-CREATE", "N-SET"]
    assert [(e.operation, e.status, e.pps_status) for e in events] == [
        ("N-CREATE", 0x0000, "IN PROGRESS"),
        ("N-SET", 0x0000, "COMPLETED"),
    ]


def test_it_records_a_discontinued_step_with_its_reason(scp: MppsScp) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    mpps_set(scp.peer, UID, discontinued(), timeout=10)
    ds = scp.instances[UID].dataset
    assert ds.PerformedProcedureStepStatus == "DISCONTINUED"
    assert ds.PerformedProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110513"


def test_an_intermediate_n_set_keeps_the_step_in_progress(scp: MppsScp) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    update = Dataset()
    update.PerformedProcedureStepDescription = "MRI KNEE RIGHT WO CONTRAST + EXTRA SAG"
    assert mpps_set(scp.peer, UID, update, timeout=10) == 0x0000
    instance = scp.instances[UID]
    assert instance.status == "IN PROGRESS"
    assert instance.dataset.PerformedProcedureStepDescription == "MRI KNEE RIGHT WO CONTRAST + EXTRA SAG"
    assert mpps_set(scp.peer, UID, completed(), timeout=10) == 0x0000


def test_what_was_recorded_and_reported_stays_as_it_was_after_later_n_sets(
    scp: MppsScp, events: list[MppsEvent]
) -> None:
    """The registry shares elements between an instance's datasets instead of copying them: an N-SET
    must still change neither the dataset of an earlier event nor the history."""
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    update = Dataset()
    update.PerformedProcedureStepDescription = "MRI KNEE RIGHT WO CONTRAST + EXTRA SAG"
    mpps_set(scp.peer, UID, update, timeout=10)
    mpps_set(scp.peer, UID, completed(), timeout=10)

    created, updated, done = (e.dataset for e in events)
    assert created is not None and updated is not None and done is not None
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert "PerformedProcedureStepDescription" not in created or (
        created.PerformedProcedureStepDescription != update.PerformedProcedureStepDescription)
    assert not created.get("PerformedSeriesSequence") and not created.get("PerformedProcedureStepEndTime")
    assert updated.PerformedProcedureStepStatus == "IN PROGRESS"
    assert updated.PerformedProcedureStepDescription == "MRI KNEE RIGHT WO CONTRAST + EXTRA SAG"
    assert not updated.get("PerformedSeriesSequence")
    assert done.PerformedProcedureStepStatus == "COMPLETED" and done.PerformedSeriesSequence
    assert done.PerformedProcedureStepDescription == completed().get("PerformedProcedureStepDescription",
                                                                     update.PerformedProcedureStepDescription)
    # the elements the N-SETs did not replace are those the N-CREATE recorded
    assert done.ScheduledStepAttributesSequence[0].AccessionNumber == ORDER.accession_number
    history = scp.instances[UID].history
    assert [op for op, _, _ in history] == ["N-CREATE", "N-SET", "N-SET"]
    assert history[0][2].PerformedProcedureStepStatus == "IN PROGRESS"
    assert "PerformedProcedureStepStatus" not in history[1][2]  # the modification list as sent
    assert sorted(history[2][2].keys()) == sorted(completed().keys())


def test_creating_an_existing_instance_again_is_a_duplicate(scp: MppsScp, events: list[MppsEvent]) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    assert status_of(lambda: mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)) == DUPLICATE_SOP_INSTANCE
    assert events[-1].status == DUPLICATE_SOP_INSTANCE and events[-1].dataset is None


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", "SCHEDULED"])
def test_creating_a_step_that_is_not_in_progress_is_an_invalid_attribute_value(scp: MppsScp, status: str) -> None:
    ds = in_progress()
    ds.PerformedProcedureStepStatus = status
    assert status_of(lambda: mpps_create(scp.peer, ds, mpps_uid=UID, timeout=10)) == INVALID_ATTRIBUTE_VALUE
    assert UID not in scp.instances


def test_creating_a_step_without_a_type_1_attribute_is_a_missing_attribute(scp: MppsScp) -> None:
    ds = in_progress()
    del ds.PerformedProcedureStepStartDate
    assert status_of(lambda: mpps_create(scp.peer, ds, mpps_uid=UID, timeout=10)) == MISSING_ATTRIBUTE


def test_setting_an_unknown_instance_is_no_such_object_instance(scp: MppsScp) -> None:
    assert status_of(lambda: mpps_set(scp.peer, UID, completed(), timeout=10)) == NO_SUCH_OBJECT_INSTANCE


@pytest.mark.parametrize("final", [completed, discontinued], ids=["completed", "discontinued"])
def test_a_final_step_may_no_longer_be_modified(scp: MppsScp, final: Callable[[], Dataset]) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    mpps_set(scp.peer, UID, final(), timeout=10)
    before = scp.instances[UID].dataset.PerformedProcedureStepStatus
    assert status_of(lambda: mpps_set(scp.peer, UID, completed(), timeout=10)) == PROCESSING_FAILURE
    assert scp.instances[UID].dataset.PerformedProcedureStepStatus == before
    assert len(scp.instances[UID].history) == 2


@pytest.mark.parametrize("value", ["FINISHED", "SCHEDULED", ""])
def test_setting_an_invalid_status_is_an_invalid_attribute_value(scp: MppsScp, value: str) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    ds = completed()
    ds.PerformedProcedureStepStatus = value
    assert status_of(lambda: mpps_set(scp.peer, UID, ds, timeout=10)) == INVALID_ATTRIBUTE_VALUE
    assert scp.instances[UID].status == "IN PROGRESS"


def test_completing_without_the_final_state_attributes_is_a_processing_failure(scp: MppsScp) -> None:
    mpps_create(scp.peer, in_progress(), mpps_uid=UID, timeout=10)
    ds = completed()
    del ds.PerformedProcedureStepEndDate
    assert status_of(lambda: mpps_set(scp.peer, UID, ds, timeout=10)) == PROCESSING_FAILURE
    no_series = completed()
    no_series.PerformedSeriesSequence = []
    assert status_of(lambda: mpps_set(scp.peer, UID, no_series, timeout=10)) == PROCESSING_FAILURE
    assert scp.instances[UID].status == "IN PROGRESS"


def test_a_peer_that_is_not_listening_raises_a_transient_send_error() -> None:
    peer = DicomPeer(host="127.0.0.1", port=free_port(), ae_title="NOBODY")
    with pytest.raises(SendError) as raised:
        mpps_create(peer, in_progress(), mpps_uid=UID, timeout=5)
    assert not raised.value.permanent
    assert raised.value.status is None


def test_an_association_rejected_by_the_peer_raises_send_error() -> None:
    # A real SCP that insists on being called by its own AE title rejects us (PS3.8 A-ASSOCIATE-RJ).
    ae = AE(ae_title="STRICT_MPPS")
    ae.require_called_aet = True
    ae.add_supported_context("1.2.840.10008.3.1.2.3.3")
    port = free_port()
    ae.start_server(("127.0.0.1", port), block=False)
    try:
        with pytest.raises(SendError, match="rejected") as raised:
            mpps_create(DicomPeer(host="127.0.0.1", port=port, ae_title="WRONG_AET"), in_progress(), mpps_uid=UID)
        assert raised.value.permanent  # called AE title not recognised is a permanent rejection
    finally:
        ae.shutdown()


def test_a_peer_without_the_mpps_service_raises_a_permanent_send_error() -> None:
    with WorklistScp(provider=list, port=free_port()) as worklist_only:
        with pytest.raises(SendError, match="no presentation context") as raised:
            mpps_set(worklist_only.peer, UID, completed(), timeout=10)
    assert raised.value.permanent
