"""Storage Commitment Push Model (PS3.4 Annex J): our SCU against our SCP, both reply modes, and a silent SCP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from simulations.transport.dimse.commitment import _release_bounded, request_commitment
from simulations.transport.dimse.commitment_info import FAILURE_CLASS_INSTANCE_CONFLICT, FAILURE_NO_SUCH_OBJECT
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.store import send_instances
from simulations.transport.errors import SendError
from tests.conftest import free_port
from tests.transport.dicom_files import write_ct_series

NEVER_STORED = "2.25.1234567890"


@pytest.fixture
def stored_pairs() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def scp(tmp_path: Path, stored_pairs: list[tuple[str, str]]) -> Iterator[StorageScp]:
    server = StorageScp(storage_dir=tmp_path / "store")
    server.start()
    results = send_instances(server.peer, write_ct_series(tmp_path / "series", count=3))
    stored_pairs.extend((r.sop_class_uid, r.sop_instance_uid) for r in results if r.status == 0)
    yield server
    server.stop()


def test_it_commits_everything_our_scp_stored_on_the_same_association(
    scp: StorageScp, stored_pairs: list[tuple[str, str]]
) -> None:
    assert len(stored_pairs) == 3

    result = request_commitment(scp.peer, stored_pairs, transaction_uid="2.25.100", timeout=10)

    assert result.transaction_uid == "2.25.100"
    assert result.committed == stored_pairs
    assert result.failed == [] and result.all_committed
    assert result.same_association is True


def test_it_lists_an_instance_never_stored_as_failed_with_no_such_object(
    scp: StorageScp, stored_pairs: list[tuple[str, str]]
) -> None:
    asked = [*stored_pairs, (CTImageStorage, NEVER_STORED), (MRImageStorage, stored_pairs[0][1])]

    result = request_commitment(scp.peer, asked, transaction_uid="2.25.101", timeout=10)

    assert result.committed == stored_pairs
    assert result.failed == [
        (CTImageStorage, NEVER_STORED, FAILURE_NO_SUCH_OBJECT),
        (MRImageStorage, stored_pairs[0][1], FAILURE_CLASS_INSTANCE_CONFLICT),
    ]


def test_it_does_not_commit_an_instance_whose_file_has_gone(
    scp: StorageScp, stored_pairs: list[tuple[str, str]]
) -> None:
    lost = scp.find(stored_pairs[1][1])
    assert lost is not None
    lost.path.unlink()

    result = request_commitment(scp.peer, stored_pairs, transaction_uid="2.25.102", timeout=10)

    assert result.failed == [(*stored_pairs[1], FAILURE_NO_SUCH_OBJECT)]


@pytest.mark.filterwarnings("ignore:The value length")
def test_a_request_naming_an_over_long_uid_is_refused_and_the_scp_goes_on(
    scp: StorageScp, stored_pairs: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SendError, match="refused Storage Commitment: N-ACTION status 0x0106"):
        request_commitment(scp.peer, [(CTImageStorage, "2.25." + "9" * 80)], transaction_uid="2.25.104", timeout=10)
    assert "has 85 characters, more than the 64 of a UID" in caplog.text
    with pytest.raises(SendError, match="N-ACTION status 0x0120"):  # missing, not invalid
        request_commitment(scp.peer, stored_pairs, transaction_uid="", timeout=10)
    assert "no Transaction UID (0008,1195)" in caplog.text

    assert request_commitment(scp.peer, stored_pairs, transaction_uid="2.25.105", timeout=10).all_committed


def test_it_receives_the_report_on_an_association_the_scp_opens_back(tmp_path: Path) -> None:
    listen_port = free_port()
    scp = StorageScp(
        storage_dir=tmp_path / "store", commitment_reply="new", commitment_peers={"MODALITY1": listen_port}
    )
    scp.start()
    try:
        peer = DicomPeer(scp.host, scp.port, scp.ae_title, calling_ae_title="MODALITY1")
        results = send_instances(peer, write_ct_series(tmp_path / "series", count=2))
        pairs = [(r.sop_class_uid, r.sop_instance_uid) for r in results]

        result = request_commitment(peer, pairs, transaction_uid="2.25.103", timeout=10, listen_port=listen_port)
    finally:
        scp.stop()

    assert result.same_association is False
    assert result.committed == pairs and result.failed == []


def test_it_gives_up_with_a_send_error_when_no_report_comes() -> None:
    def handle_action(event: Any) -> tuple[int, None]:
        return 0x0000, None  # accepts the request, never reports

    ae = AE(ae_title="SILENT")
    ae.add_supported_context(StorageCommitmentPushModel)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_ACTION, handle_action)])
    try:
        peer = DicomPeer("127.0.0.1", server.server_address[1], "SILENT", timeout=5)
        with pytest.raises(SendError, match="no Storage Commitment report within 0.5 s"):
            request_commitment(peer, [(CTImageStorage, NEVER_STORED)], transaction_uid="2.25.104", timeout=0.5)
    finally:
        server.shutdown()


class _StuckRelease:
    """An association whose release() spins until aborted, as pynetdicom's can (issue #820)."""

    def __init__(self) -> None:
        self.is_established = True
        self.aborted = threading.Event()

    def release(self) -> None:
        self.aborted.wait(30)

    def abort(self) -> None:
        self.aborted.set()


def test_a_stuck_release_neither_holds_the_caller_nor_stays_open(caplog: pytest.LogCaptureFixture) -> None:
    assoc = _StuckRelease()
    started = time.monotonic()

    _release_bounded(assoc, timeout=0.3)

    assert time.monotonic() - started < 0.1  # the verdict is in hand: the caller goes on at once
    assert not assoc.aborted.is_set()
    assert assoc.aborted.wait(5)  # the watchdog cut it short with an A-ABORT
    assert "did not complete in 0.3 s" in caplog.text
