"""Storage Commitment data sets (PS3.4 Table J.3-1/J.3-2): the report the built-in SCP encodes itself
is the one pydicom writes, and reads back to what was reported."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from simulations.transport.dimse.commitment_info import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    FAILURE_CLASS_INSTANCE_CONFLICT,
    FAILURE_NO_SUCH_OBJECT,
    CommitmentReport,
    InvalidUid,
    commitment_request,
    parse_commitment_report,
    parse_commitment_request,
)
from simulations.transport.dimse.upper_layer import encode_dataset

COMMITTED = ((CTImageStorage, "2.25.1"), (MRImageStorage, "1.2.826.0.1.3680043.8.498.10"))  # odd and even lengths
FAILED = ((CTImageStorage, "2.25.77", FAILURE_NO_SUCH_OBJECT), (MRImageStorage, "2.25.778", FAILURE_CLASS_INSTANCE_CONFLICT))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize(("committed", "failed"), [(COMMITTED, ()), ((), FAILED), (COMMITTED, FAILED)])
def test_the_report_is_byte_for_byte_what_pydicom_writes_and_reads_back(syntax, committed, failed) -> None:
    report = CommitmentReport("2.25.4242", committed, failed)
    encoded = report.encode(syntax)

    assert encoded == encode_dataset(report.dataset(), syntax)
    back = parse_commitment_report(read_dataset(BytesIO(encoded), syntax == ImplicitVRLittleEndian, True))
    assert back.transaction_uid == "2.25.4242"
    assert back.committed == list(committed) and back.failed == list(failed)
    assert report.event_type == (EVENT_FAILURES_EXIST if failed else EVENT_ALL_COMMITTED)


def test_a_hundred_references_encode_without_loss() -> None:
    committed = tuple((CTImageStorage, f"2.25.{n}") for n in range(100))
    encoded = CommitmentReport("2.25.1", committed).encode(ExplicitVRLittleEndian)

    assert parse_commitment_report(read_dataset(BytesIO(encoded), False, True)).committed == list(committed)


@pytest.mark.filterwarnings("ignore:The value length")
def test_a_request_naming_a_uid_longer_than_a_uid_may_be_is_refused_by_name() -> None:
    request = commitment_request("2.25.9", [(CTImageStorage, "2.25." + "1" * 70)])

    with pytest.raises(InvalidUid, match=r"Referenced SOP Instance UID \(0008,1155\) has 75 characters"):
        parse_commitment_request(request)
    assert parse_commitment_request(commitment_request("2.25.9", [(CTImageStorage, "2.25.1")])) == (
        "2.25.9", [(CTImageStorage, "2.25.1")])
