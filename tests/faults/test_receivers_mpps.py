"""The MPPS SCP under N-SETs it must refuse (issue 13, "Receivers under hostile peers").

Before: an N-SET of Modality or Patient ID answered 0x0000 and changed the step; an over-long
Requested SOP Instance UID made pynetdicom log a traceback and abort the association. PS3.4 F.7.2.2
and Table F.7.2-1 say which attributes an N-SET may carry; PS3.7 C.5.9 names the status for a UID
that breaks the construction rules. Raw N-SETs come from a hand-driven association (no SCU would
send them); the well-formed ones from our pynetdicom SCU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.mpps import MppsScp, mpps_create, mpps_set
from simulations.transport.dimse.store import _context, _Link
from simulations.transport.dimse.upper_layer import dimse_buffers, encode_command
from simulations.transport.errors import SendError
from tests.transport.test_dimse_mpps import UID, completed, in_progress

N_SET_RQ, N_CREATE_RQ = 0x0120, 0x0140


@pytest.fixture
def scp() -> Iterator[MppsScp]:
    with MppsScp() as server:
        mpps_create(server.peer, in_progress(), mpps_uid=UID)
        yield server


def raw_request(peer: DicomPeer, command_field: int, uid: str, ds: Dataset) -> dict[int, int | str]:
    """One N-SET or N-CREATE with any UID (encoded as given) and ``ds``; returns the response command."""
    link = _Link(peer, max_pdu=0)
    [context_id] = link.associate([_context(0, ModalityPerformedProcedureStep, [ImplicitVRLittleEndian])])
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    uid_element = 0x1001 if command_field == N_SET_RQ else 0x1000
    sop_class_element = 0x0003 if command_field == N_SET_RQ else 0x0002
    command = encode_command(((sop_class_element, ModalityPerformedProcedureStep), (0x0100, command_field),
                              (0x0110, 7), (0x0800, 0x0000), (uid_element, uid)))
    try:
        link._wire().send(dimse_buffers(context_id, command, buffer.getvalue(), link.fragment))
        return link._read_command()
    finally:
        link.release()


def no_traceback(caplog: pytest.LogCaptureFixture) -> bool:
    return not any(record.exc_info for record in caplog.records) and "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("Modality", "CT"), ("PatientID", "SOMEONE_ELSE"), ("PerformedProcedureStepID", "PPS9"),
     ("PerformedStationAETitle", "OTHER_SCANNER"), ("PerformedProcedureStepStartDate", "19990101")],
)
def test_an_n_set_of_an_attribute_table_f_7_2_1_does_not_allow_is_refused_with_0106(
    scp: MppsScp, keyword: str, value: str
) -> None:
    before = scp.instances[UID].dataset
    modifications = Dataset()
    setattr(modifications, keyword, value)

    with pytest.raises(SendError) as refused:
        mpps_set(scp.peer, UID, modifications)

    assert refused.value.status == 0x0106
    assert "may not be set by N-SET" in refused.value.message
    assert scp.instances[UID].dataset.get(keyword) == before.get(keyword)


def test_the_allowed_n_set_still_completes_the_step(scp: MppsScp) -> None:
    assert mpps_set(scp.peer, UID, completed()) == 0x0000
    assert scp.instances[UID].status == "COMPLETED"


@pytest.mark.parametrize(
    ("uid", "why"),
    [("1." + "2" * 80, "82 characters long"), ("1.2\x00.3", "NUL"), ("1.2.abc", "digits and dots")],
    ids=["over-long", "nul", "letters"],
)
def test_an_n_set_naming_a_malformed_uid_is_answered_0117_without_a_traceback(
    scp: MppsScp, caplog: pytest.LogCaptureFixture, uid: str, why: str
) -> None:
    modifications = Dataset()
    modifications.PerformedProcedureStepDescription = "MALFORMED UID"

    with caplog.at_level(logging.DEBUG):
        response = raw_request(scp.peer, N_SET_RQ, uid, modifications)

    assert response[0x0100] == 0x8120  # an N-SET-RSP, not an A-ABORT
    assert response[0x0900] == 0x0117
    assert why in str(response[0x0902])
    assert no_traceback(caplog)


def test_an_n_create_with_an_over_long_uid_is_answered_0117_and_nothing_is_created(
    scp: MppsScp, caplog: pytest.LogCaptureFixture
) -> None:
    uid = "1." + "3" * 70
    with caplog.at_level(logging.DEBUG):
        response = raw_request(scp.peer, N_CREATE_RQ, uid, in_progress(uid="2.25.1"))

    assert (response[0x0100], response[0x0900]) == (0x8140, 0x0117)
    assert list(scp.instances) == [UID]
    assert no_traceback(caplog)


def test_a_uid_attribute_value_carrying_a_nul_is_refused_with_0106(
    scp: MppsScp, caplog: pytest.LogCaptureFixture
) -> None:
    modifications = completed()
    modifications.PerformedSeriesSequence[0].SeriesInstanceUID = "1.2.3\x00.4"

    with caplog.at_level(logging.DEBUG):
        response = raw_request(scp.peer, N_SET_RQ, UID, modifications)

    assert response[0x0900] == 0x0106
    assert "SeriesInstanceUID contains a NUL" in str(response[0x0902])
    assert scp.instances[UID].status == "IN PROGRESS"
    assert no_traceback(caplog)
