"""Modality Worklist over DIMSE: PS3.4 C.2.2.2 matching, our SCP and SCU, dcmtk findscu/wlmscpfs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from generators.terms import Modality
from generators.worklist import build_worklist_item, query_dataset
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.mpps import MppsScp
from simulations.transport.dimse.worklist import (
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    SOURCE_FAILED,
    UNABLE_TO_PROCESS,
    QueryError,
    WorklistScp,
    find_worklist,
    match_worklist_item,
    publish_worklist_item,
)
from simulations.transport.errors import SendError
from tests.conftest import free_port, require_binary
from tests.dcmtk import DCMTK_ENV
from tests.dcmtk import wlmscpfs as dcmtk_wlmscpfs
from tests.examples import order_for

MR = order_for(Modality.MR)  # scheduled 2026-11-25 09:30:00
CT = order_for(Modality.CT, seed=8)
DX = order_for(Modality.DX, seed=9)
ITEM = build_worklist_item(MR)


def key(sps: dict[str, object] | None = None, **top: object) -> Dataset:
    """A minimal identifier: the given top-level keys, plus one SPS key item when ``sps`` given."""
    ds = Dataset()
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    if sps is not None:
        item = Dataset()
        for keyword, value in sps.items():
            setattr(item, keyword, value)
        ds.ScheduledProcedureStepSequence = Sequence([item])
    return ds


def matches(query: Dataset, item: Dataset = ITEM) -> bool:
    return match_worklist_item(query, item) is not None


# --- matching rules, direct calls (PS3.4 C.2.2.2) -------------------------------------------------


def test_single_value_matching_is_exact() -> None:
    assert matches(key(PatientID="MRN0012345"))
    assert not matches(key(PatientID="MRN001234"))
    assert not matches(key(PatientID="MRN00123456"))


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")  # deliberately invalid keys
def test_single_value_matching_is_case_sensitive_outside_person_names() -> None:
    assert matches(key({"Modality": "MR"}))
    assert not matches(key({"Modality": "mr"}))


def test_person_names_match_ignoring_case_accents_and_empty_trailing_components() -> None:
    assert matches(key(PatientName="o'brien-nunez^zoe^anne"))
    assert matches(key(PatientName="O'BRIEN-NÚÑEZ^ZOË^ANNE^^"))
    assert not matches(key(PatientName="O'BRIEN-NUNEZ^ZOE"))


def test_star_and_question_mark_are_wildcards() -> None:
    accession = MR.accession_number
    assert matches(key(AccessionNumber=accession[:4] + "*"))
    assert matches(key(AccessionNumber=accession[:-1] + "?"))
    assert not matches(key(AccessionNumber=accession[:-2] + "?"))  # ? is exactly one character
    assert matches(key(PatientName="o'brien*"))
    assert matches(key(PatientName="*^ZO?^*"))
    assert not matches(key(PatientName="SMITH*"))


def test_a_zero_length_key_matches_and_returns_the_value() -> None:
    response = match_worklist_item(key(PatientID="", AccessionNumber=None), ITEM)
    assert response is not None
    assert response.PatientID == MR.patient.mrn
    assert response.AccessionNumber == MR.accession_number


def test_a_lone_star_matches_even_an_empty_value_but_a_value_does_not() -> None:
    assert ITEM.CurrentPatientLocation in (None, "")
    assert matches(key(CurrentPatientLocation="*"))
    assert not matches(key(CurrentPatientLocation="WARD*"))
    assert not matches(key(CurrentPatientLocation="WARD 4B"))


@pytest.mark.parametrize(
    ("date_key", "expected"),
    [
        ("20261125", True),
        ("20261126", False),
        ("20261125-", True),
        ("20261126-", False),
        ("-20261125", True),
        ("-20261124", False),
        ("20261120-20261130", True),
        ("20261126-20261130", False),
    ],
)
def test_dates_match_single_values_and_ranges(date_key: str, expected: bool) -> None:
    assert matches(key({"ScheduledProcedureStepStartDate": date_key})) is expected


@pytest.mark.parametrize(
    ("time_key", "expected"),
    [
        ("093000", True),
        ("0930", True),  # a partial time covers its whole minute
        ("09", True),
        ("0931", False),
        ("0900-1000", True),
        ("1000-", False),
        ("-0929", False),
        ("-0930", True),
    ],
)
def test_times_match_single_values_and_ranges(time_key: str, expected: bool) -> None:
    assert matches(key({"ScheduledProcedureStepStartTime": time_key})) is expected


def test_a_date_and_time_range_pair_is_one_combined_datetime_range() -> None:
    # Night shift from 24 Nov 18:00 to 25 Nov 10:00 contains 25 Nov 09:30 although 09:30 is not
    # inside "1800-1000" read as a time of day.
    night = {"ScheduledProcedureStepStartDate": "20261124-20261125", "ScheduledProcedureStepStartTime": "1800-1000"}
    assert matches(key(night))
    # 25 Nov 10:00 to 26 Nov 08:00 does not contain 25 Nov 09:30 although both dates match.
    later = {"ScheduledProcedureStepStartDate": "20261125-20261126", "ScheduledProcedureStepStartTime": "1000-0800"}
    assert not matches(key(later))
    # A single date with a time range is that day's window.
    assert matches(key({"ScheduledProcedureStepStartDate": "20261125", "ScheduledProcedureStepStartTime": "09-10"}))
    assert not matches(key({"ScheduledProcedureStepStartDate": "20261125", "ScheduledProcedureStepStartTime": "10-"}))


def test_keys_inside_the_sps_sequence_match_against_its_item() -> None:
    assert matches(key({"Modality": "MR", "ScheduledStationAETitle": MR.station_ae_title}))
    assert not matches(key({"Modality": "MR", "ScheduledStationAETitle": "OTHER_AE"}))


def test_nested_sequence_matching_returns_only_the_matching_items() -> None:
    code = Dataset()
    code.CodeValue = "KNEE_COR_T1"
    code.CodeMeaning = ""
    response = match_worklist_item(key({"ScheduledProtocolCodeSequence": Sequence([code])}), ITEM)
    assert response is not None
    (returned,) = response.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence
    assert (returned.CodeValue, returned.CodeMeaning) == ("KNEE_COR_T1", "KNEE_COR_T1")
    code.CodeValue = "NO_SUCH_PROTOCOL"
    assert not matches(key({"ScheduledProtocolCodeSequence": Sequence([code])}))


def test_an_empty_key_sequence_returns_the_whole_sequence() -> None:
    response = match_worklist_item(key(RequestedProcedureCodeSequence=Sequence()), ITEM)
    assert response is not None
    (code,) = response.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("73721", "C4")


def test_a_key_sequence_with_two_items_is_not_a_worklist_identifier() -> None:
    query = key({"Modality": "MR"})
    query.ScheduledProcedureStepSequence.append(Dataset())
    with pytest.raises(QueryError) as raised:
        match_worklist_item(query, ITEM)
    assert raised.value.status == IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


def test_uid_keys_match_any_uid_of_a_list() -> None:
    assert matches(key(StudyInstanceUID=["1.2.3", MR.study_instance_uid]))
    assert matches(key(StudyInstanceUID=MR.study_instance_uid))
    assert not matches(key(StudyInstanceUID=["1.2.3", "1.2.4"]))


def test_numeric_keys_match_by_value() -> None:
    assert matches(key(PregnancyStatus=4))
    assert not matches(key(PregnancyStatus=1))


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")  # deliberately invalid keys
@pytest.mark.parametrize(
    "sps_keys",
    [
        {"ScheduledProcedureStepStartDate": "2026-11-25"},
        {"ScheduledProcedureStepStartDate": "20261125-20261126-20261127"},
        {"ScheduledProcedureStepStartTime": "9h30"},
        {"Modality": ["MR", "CT"]},
    ],
    ids=["iso-date", "three-bounds", "bad-time", "list-outside-UI"],
)
def test_values_it_cannot_interpret_are_refused_with_unable_to_process(sps_keys: dict[str, object]) -> None:
    with pytest.raises(QueryError) as raised:
        match_worklist_item(key(sps_keys), ITEM)
    assert raised.value.status == UNABLE_TO_PROCESS


def test_only_the_requested_keys_and_the_character_set_are_returned() -> None:
    response = match_worklist_item(key(PatientID="MRN0012345", PatientAge=None), ITEM)
    assert response is not None
    assert {e.keyword for e in response} == {"SpecificCharacterSet", "PatientID", "PatientAge"}
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert response.PatientAge in (None, "")  # requested, not known: zero length


def test_a_sequence_key_matches_an_item_without_that_sequence_only_universally() -> None:
    bare = Dataset()
    bare.PatientID = "P1"
    assert matches(key({"Modality": ""}, PatientID="P1"), bare)
    assert not matches(key({"Modality": "MR"}, PatientID="P1"), bare)


# --- our SCU <-> our SCP -------------------------------------------------------------------------


@pytest.fixture
def scp() -> Iterator[WorklistScp]:
    server = WorklistScp(provider=lambda: [build_worklist_item(o) for o in (MR, CT, DX)], port=free_port())
    server.start()
    yield server
    server.stop()


def test_our_scu_finds_the_entry_on_our_scp_by_patient_and_modality(scp: WorklistScp) -> None:
    (found,) = find_worklist(scp.peer, query_dataset(PatientID=MR.patient.mrn, Modality="MR"), timeout=10)
    assert found.AccessionNumber == MR.accession_number
    assert found.StudyInstanceUID == MR.study_instance_uid
    assert str(found.PatientName) == "O'BRIEN-NÚÑEZ^ZOË^ANNE"
    sps = found.ScheduledProcedureStepSequence[0]
    assert (sps.Modality, sps.ScheduledProcedureStepID) == ("MR", MR.sps_id)
    assert len(sps.ScheduledProtocolCodeSequence) == len(MR.exam.series)


def test_our_scu_gets_every_entry_of_a_day_and_none_of_another(scp: WorklistScp) -> None:
    today = find_worklist(scp.peer, query_dataset(ScheduledProcedureStepStartDate="20261125"), timeout=10)
    assert sorted(d.AccessionNumber for d in today) == sorted(o.accession_number for o in (MR, CT, DX))
    assert find_worklist(scp.peer, query_dataset(ScheduledProcedureStepStartDate="20261126-"), timeout=10) == []


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")  # deliberately invalid keys
def test_a_query_the_scp_cannot_interpret_raises_with_the_failure_status(scp: WorklistScp) -> None:
    with pytest.raises(SendError) as raised:
        find_worklist(scp.peer, query_dataset(ScheduledProcedureStepStartDate="2026-11-25"), timeout=10)
    assert raised.value.status == UNABLE_TO_PROCESS
    assert raised.value.permanent


def test_a_two_item_key_sequence_is_answered_with_a900(scp: WorklistScp) -> None:
    query = query_dataset()
    query.ScheduledProcedureStepSequence.append(Dataset())
    with pytest.raises(SendError) as raised:
        find_worklist(scp.peer, query, timeout=10)
    assert raised.value.status == IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


def test_a_failing_worklist_source_is_answered_with_a_failure_status() -> None:
    calls: list[int] = []

    def flaky() -> list[Dataset]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is gone")
        return [ITEM]

    with WorklistScp(provider=flaky, port=free_port()) as server:
        with pytest.raises(SendError) as raised:
            find_worklist(server.peer, query_dataset(), timeout=10)
        assert raised.value.status == SOURCE_FAILED
        # The SCP survives its source's failure and answers the next query.
        assert len(find_worklist(server.peer, query_dataset(), timeout=10)) == 1


# --- dcmtk findscu -> our SCP ----------------------------------------------------------------------


def run_findscu(port: int, out: Path, *keys: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    findscu = require_binary("findscu")
    args = [findscu, "-v", "-W", "-aec", "YEETER_MWL", "-aet", "MODALITY1", "-X", "-od", str(out), *extra]
    for k in keys:
        args += ["-k", k]
    return subprocess.run(
        [*args, "127.0.0.1", str(port)], env=DCMTK_ENV, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.interop
def test_findscu_finds_the_entry_by_patient_id_and_sps_modality(scp: WorklistScp, tmp_path: Path) -> None:
    result = run_findscu(
        scp.port,
        tmp_path,
        f"PatientID={MR.patient.mrn}",
        "ScheduledProcedureStepSequence[0].Modality=MR",
        "PatientName",
        "AccessionNumber",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261125-",
    )
    output = result.stdout + result.stderr
    assert "Received Final Find Response (Success)" in output, output
    (rsp,) = sorted(tmp_path.glob("rsp*.dcm"))
    found = pydicom.dcmread(rsp)
    assert found.AccessionNumber == MR.accession_number
    assert str(found.PatientName) == "O'BRIEN-NÚÑEZ^ZOË^ANNE"
    assert found.ScheduledProcedureStepSequence[0].Modality == "MR"
    assert "StudyInstanceUID" not in found  # not requested, not returned


@pytest.mark.interop
def test_findscu_gets_nothing_for_a_non_matching_query(scp: WorklistScp, tmp_path: Path) -> None:
    result = run_findscu(scp.port, tmp_path, "PatientID=NOBODY", "ScheduledProcedureStepSequence[0].Modality=MR")
    output = result.stdout + result.stderr
    assert "Received Final Find Response (Success)" in output, output
    assert list(tmp_path.glob("rsp*.dcm")) == []


@pytest.mark.interop
def test_a_c_cancel_from_findscu_stops_the_matching(tmp_path: Path) -> None:
    def slow_worklist() -> Iterator[Dataset]:
        for _ in range(40):  # a source slower than the network: 2 s in all if never cancelled
            time.sleep(0.05)
            yield ITEM

    with WorklistScp(provider=slow_worklist, port=free_port()) as server:
        result = run_findscu(server.port, tmp_path, "PatientID", extra=("--cancel", "1"))
    output = result.stdout + result.stderr
    assert "Received Final Find Response (Cancel" in output, output
    assert 1 <= len(list(tmp_path.glob("rsp*.dcm"))) < 40


# --- our SCU -> dcmtk wlmscpfs serving our .wl files ---------------------------------------------------


@pytest.fixture
def wlmscpfs(tmp_path: Path) -> Iterator[tuple[DicomPeer, Path]]:
    """dcmtk wlmscpfs serving ``<root>/YEETER_WL`` (with -csk: the file's character set is returned,
    so UTF-8 names arrive declared as such); yields (peer, AE folder)."""
    with dcmtk_wlmscpfs(tmp_path / "worklists", ae_title="YEETER_WL") as served:
        yield served


@pytest.mark.interop
def test_wlmscpfs_serves_our_published_items_to_our_scu(wlmscpfs: tuple[DicomPeer, Path]) -> None:
    peer, folder = wlmscpfs
    for order in (MR, CT):
        path = publish_worklist_item(build_worklist_item(order), folder)
        assert path.name == f"{order.accession_number}.wl"
    assert (folder / "lockfile").exists()
    (found,) = find_worklist(peer, query_dataset(PatientID=MR.patient.mrn, Modality="MR"), timeout=10)
    assert found.AccessionNumber == MR.accession_number
    assert found.StudyInstanceUID == MR.study_instance_uid
    assert str(found.PatientName) == "O'BRIEN-NÚÑEZ^ZOË^ANNE"
    assert found.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == MR.sps_id
    (ct,) = find_worklist(peer, query_dataset(ScheduledStationAETitle="MODALITY1", Modality="CT"), timeout=10)
    assert ct.AccessionNumber == CT.accession_number
    assert find_worklist(peer, query_dataset(Modality="NM"), timeout=10) == []


# --- faults ------------------------------------------------------------------------------------------


def test_a_peer_that_is_not_listening_raises_a_transient_send_error() -> None:
    peer = DicomPeer(host="127.0.0.1", port=free_port(), ae_title="NOBODY")
    with pytest.raises(SendError) as raised:
        find_worklist(peer, query_dataset(), timeout=5)
    assert not raised.value.permanent


def test_an_association_rejected_by_the_peer_raises_a_permanent_send_error() -> None:
    # A real SCP that insists on being called by its own AE title sends A-ASSOCIATE-RJ
    # (rejected-permanent, called AE title not recognised). dcmtk "wlmscpfs --refuse" is not used
    # here: it closes the socket so fast that the client's TCP stack sometimes gets an RST and
    # discards the RJ PDU (measured 11 of 25 runs), which is a dcmtk/TCP race, not our behaviour.
    ae = AE(ae_title="STRICT_MWL")
    ae.require_called_aet = True
    ae.add_supported_context(ModalityWorklistInformationFind)
    port = free_port()
    ae.start_server(("127.0.0.1", port), block=False)
    try:
        with pytest.raises(SendError, match="rejected") as raised:
            find_worklist(DicomPeer(host="127.0.0.1", port=port, ae_title="WRONG_AET"), query_dataset(), timeout=10)
        assert raised.value.permanent
    finally:
        ae.shutdown()


def test_a_peer_without_the_worklist_service_raises_a_permanent_send_error() -> None:
    with MppsScp(port=free_port()) as mpps_only:
        with pytest.raises(SendError, match="no presentation context") as raised:
            find_worklist(mpps_only.peer, query_dataset(), timeout=10)
    assert raised.value.permanent
