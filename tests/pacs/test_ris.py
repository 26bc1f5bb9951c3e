"""The built-in receivers as a small RIS: orders over MLLP become worklist items, MPPS moves their status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.hl7 import HL7Config, build_orm
from generators.mpps import PerformedSeries, build_mpps_completed, build_mpps_in_progress
from generators.terms import Modality
from generators.worklist import build_worklist_item, query_dataset
from simulations.receivers import BuiltinReceivers
from simulations.ris import OrderError, order_action
from simulations.transport.dimse.mpps import mpps_create, mpps_set
from simulations.transport.dimse.worklist import find_worklist
from simulations.transport.mllp import MllpClient
from tests.examples import order_for

MR = order_for(Modality.MR)
CT = order_for(Modality.CT, seed=8)
NOW = dt.datetime(2026, 11, 25, 8, 0)
CONFIG = HL7Config(sending_application="YEETER", sending_facility="YEETER_HOSP")



def segment(name: str, fields: dict[int, str]) -> str:
    """An ER7 segment with ``fields`` at their HL7 positions (field 1 first)."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name, *values])


# A hand-written v2.3.1 order from another sender: escapes, XPN prefix/suffix, DICOM modality in OBR-24, no ZDS.
FOREIGN_ORM = "\r".join((
    "MSH|^~\\&|EPIC|GH|RIS|GH|20261126101500||ORM^O01|CTL42|P|2.3.1",
    segment("PID", {1: "1", 3: "P777^^^GH\\T\\NORTH^MR", 5: "SMITH-JONES^ANNA^B^III^DR", 7: "19620304", 8: "F"}),
    segment("PV1", {1: "1", 2: "O", 3: "RAD1^^^GH", 8: "DOC1^HOUSE^GREGORY^^^DR", 19: "V9"}),
    segment("ORC", {1: "NW", 2: "PL-9", 3: "FI-9", 5: "SC", 7: "^^^20261127143000^^S"}),
    segment("OBR", {1: "1", 2: "PL-9", 3: "FI-9", 4: "CT1001^CT HEAD W/O \\T\\ WITH^L^HEADROUT^Head routine^99LOCAL",
                    16: "DOC2^WILSON^JAMES", 18: "ACC-FOREIGN-1", 19: "RP-9", 20: "SPS-9", 24: "CT",
                    27: "^^^20261127143000^^S", 31: "R51^Headache^I10"}),
)) + "\r"


def test_a_yeeter_order_maps_to_the_item_yeeter_itself_publishes() -> None:
    action = order_action(build_orm(MR, config=CONFIG, now=NOW, control_id="C1"))

    assert action is not None and action.operation == "create" and action.accession_number == MR.accession_number
    item, reference = action.item, build_worklist_item(MR)
    for keyword in ("PatientID", "PatientName", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "RequestedProcedureID", "StudyInstanceUID", "RequestedProcedurePriority",
                    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
                    "ReferringPhysicianName", "RequestingPhysician", "AdmissionID"):
        assert item[keyword].value == reference[keyword].value, keyword
    assert item.RequestedProcedureCodeSequence[0].CodeValue == MR.procedure_code.code
    sps, ref_sps = item.ScheduledProcedureStepSequence[0], reference.ScheduledProcedureStepSequence[0]
    for keyword in ("Modality", "ScheduledProcedureStepID", "ScheduledProcedureStepStartDate",
                    "ScheduledProcedureStepStartTime", "ScheduledProcedureStepStatus"):
        assert sps[keyword].value == ref_sps[keyword].value, keyword
    assert {e.keyword for e in item} == {e.keyword for e in reference}  # every return key present


def test_an_order_from_another_sender_maps_field_by_field() -> None:
    action = order_action(FOREIGN_ORM, station_ae_titles={"CT": "CT_SCANNER_1"})

    item = action.item
    assert str(item.PatientName) == "SMITH-JONES^ANNA^B^DR^III"  # XPN suffix^prefix -> PN prefix^suffix
    assert (item.PatientID, item.IssuerOfPatientID, item.PatientSex) == ("P777", "GH&NORTH", "F")
    assert str(item.ReferringPhysicianName) == "HOUSE^GREGORY^^DR" and str(item.RequestingPhysician) == "WILSON^JAMES"
    assert (item.AccessionNumber, item.RequestedProcedureID, item.RequestedProcedurePriority) == (
        "ACC-FOREIGN-1", "RP-9", "STAT")
    assert item.RequestedProcedureDescription == "CT HEAD W/O & WITH"
    assert item.StudyInstanceUID  # minted: the order carried no ZDS
    (reason,) = item.ReasonForRequestedProcedureCodeSequence
    assert (reason.CodeValue, reason.CodingSchemeDesignator, item.ReasonForTheRequestedProcedure) == (
        "R51", "I10", "Headache")
    sps = item.ScheduledProcedureStepSequence[0]
    assert (sps.Modality, sps.ScheduledStationAETitle, sps.ScheduledProcedureStepID) == ("CT", "CT_SCANNER_1", "SPS-9")
    assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime) == ("20261127", "143000")
    (protocol,) = sps.ScheduledProtocolCodeSequence
    assert (protocol.CodeValue, protocol.CodeMeaning, protocol.CodingSchemeDesignator) == (
        "HEADROUT", "Head routine", "99LOCAL")


def test_a_cancel_removes_the_item_and_other_messages_are_not_orders() -> None:
    cancel = order_action(build_orm(MR, config=CONFIG, now=NOW, control_id="C2", order_control="CA"))
    assert (cancel.operation, cancel.status, cancel.item) == ("remove", "DISCONTINUED", None)
    assert order_action("MSH|^~\\&|A|B|C|D|20261125||ADT^A04^ADT_A01|1|P|2.5.1\rPID|1||X\r") is None


@pytest.mark.parametrize(("text", "message"), [
    (FOREIGN_ORM.replace("ACC-FOREIGN-1", ""), "OBR-18 accession number is empty"),
    (FOREIGN_ORM.replace("ORC|NW|", "ORC|ZZ|"), "ORC-1 order control 'ZZ'"),
    (FOREIGN_ORM.split("OBR|")[0], "without an OBR segment"),
])
def test_an_order_it_cannot_schedule_names_the_field(text: str, message: str) -> None:
    with pytest.raises(OrderError, match=message):
        order_action(text)


@pytest.fixture
def receivers(transactional_db, tmp_path: Path) -> Iterator[BuiltinReceivers]:
    with BuiltinReceivers(storage_dir=tmp_path / "received", station_ae_titles={"*": "MODALITY1"}) as running:
        yield running


def send(receivers: BuiltinReceivers, message: str) -> None:
    with MllpClient("127.0.0.1", receivers.hl7_port) as client:
        assert client.send(message).code == "AA"
    receivers.ris.wait_idle()


def find(receivers: BuiltinReceivers, **keys: str) -> list:
    return find_worklist(receivers.mwl.peer, query_dataset(**keys), timeout=10)


def test_orders_from_any_sender_become_items_on_the_built_in_worklist(receivers: BuiltinReceivers) -> None:
    send(receivers, FOREIGN_ORM)
    send(receivers, build_orm(CT, config=CONFIG, now=NOW, control_id="C3"))

    assert receivers.ris.problems == []
    (foreign,) = find(receivers, AccessionNumber="ACC-FOREIGN-1")
    assert foreign.ScheduledProcedureStepSequence[0].Modality == "CT"
    assert {f.AccessionNumber for f in find(receivers, ScheduledStationAETitle="MODALITY1", Modality="CT")} == {CT.accession_number, "ACC-FOREIGN-1"}

    send(receivers, FOREIGN_ORM.replace("ORC|NW|", "ORC|CA|"))
    assert find(receivers, AccessionNumber="ACC-FOREIGN-1") == []


def test_mpps_moves_the_item_to_started_then_off_the_worklist(receivers: BuiltinReceivers) -> None:
    send(receivers, build_orm(MR, config=CONFIG, now=NOW, control_id="C4"))
    mpps_uid = "2.25.5550001"
    mpps_create(receivers.mpps.peer, build_mpps_in_progress(MR, mpps_uid=mpps_uid, started_at=NOW,
                                                            station_ae_title="MODALITY1"), mpps_uid=mpps_uid)

    (started,) = find(receivers, AccessionNumber=MR.accession_number)
    assert started.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"
    assert find(receivers, AccessionNumber=MR.accession_number, ScheduledProcedureStepStatus="SCHEDULED") == []

    series = [PerformedSeries(series_instance_uid="2.25.5550002", description="AX T1", protocol_name="AX T1",
                              instances=[("1.2.840.10008.5.1.4.1.1.4", "2.25.5550003")])]
    mpps_set(receivers.mpps.peer, mpps_uid, build_mpps_completed(MR, ended_at=NOW + dt.timedelta(minutes=20),
                                                                 series=series, status="COMPLETED"))
    assert find(receivers, AccessionNumber=MR.accession_number) == []


def test_an_order_it_cannot_schedule_is_logged_and_the_next_one_still_scheduled(receivers: BuiltinReceivers) -> None:
    send(receivers, FOREIGN_ORM.replace("ACC-FOREIGN-1", ""))
    send(receivers, "MSH|^~\\&|EPIC|GH|RIS|GH|20261126101500||ORM^O01|CTL43|P|2.3.1\rPID|||\r")
    send(receivers, FOREIGN_ORM)

    assert receivers.ris.problems == [
        "order not scheduled: OBR-18 accession number is empty: the RIS cannot schedule an order without it",
        "order not scheduled: ORM^O01 without an OBR segment: nothing to schedule (IHE RAD-4)"]
    assert [f.AccessionNumber for f in find(receivers, AccessionNumber="ACC-FOREIGN-1")] == ["ACC-FOREIGN-1"]


def test_a_run_publishing_its_own_item_and_the_ris_scheduling_its_order_leave_one_item_the_runs(
    transactional_db,
) -> None:
    """Whatever the order of the two (both at once here), one entry remains per accession and it is the
    run's own item: the run's publish replaces the RIS's mapping, the RIS leaves a run's item alone."""
    from concurrent.futures import ThreadPoolExecutor

    from simulations.models import WorklistEntry
    from simulations.receivers import BuiltinRis, publish_worklist_entry

    orders = [order_for(Modality.MR, seed=seed) for seed in range(20, 32)]
    ris = BuiltinRis()

    def run_publishes(order) -> None:
        publish_worklist_entry(accession_number=order.accession_number, dataset=build_worklist_item(order),
                               modality="MR", station_ae_title=order.station_ae_title, scheduled_at=order.scheduled_at)

    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(run_publishes, o) for o in orders]
        jobs += [pool.submit(ris.schedule, build_orm(o, config=CONFIG, now=NOW, control_id=f"R{i}"))
                 for i, o in enumerate(orders)]
        for job in jobs:
            job.result()
    entries = list(WorklistEntry.objects.order_by("accession_number"))
    assert [e.accession_number for e in entries] == sorted(o.accession_number for o in orders)
    assert all(e.dataset == build_worklist_item(o).to_json_dict()
               for e, o in zip(entries, sorted(orders, key=lambda o: o.accession_number)))


def test_a_replacement_order_rewrites_the_item_and_status_updates_move_it(receivers: BuiltinReceivers) -> None:
    send(receivers, FOREIGN_ORM)
    send(receivers, FOREIGN_ORM.replace("ORC|NW|", "ORC|XO|").replace("CT HEAD W/O \\T\\ WITH", "CT HEAD W/O"))
    (item,) = find(receivers, AccessionNumber="ACC-FOREIGN-1")
    assert item.RequestedProcedureDescription == "CT HEAD W/O"

    send(receivers, FOREIGN_ORM.replace("ORC|NW|PL-9|FI-9||SC|", "ORC|SC|PL-9|FI-9||IP|"))
    (started,) = find(receivers, AccessionNumber="ACC-FOREIGN-1")
    assert started.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"
    send(receivers, FOREIGN_ORM.replace("ORC|NW|PL-9|FI-9||SC|", "ORC|SC|PL-9|FI-9||CM|"))
    assert find(receivers, AccessionNumber="ACC-FOREIGN-1") == []
