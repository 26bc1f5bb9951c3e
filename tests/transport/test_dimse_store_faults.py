"""C-STORE SCU failure handling: per-instance statuses and retries, rejects, aborts, absent peers."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, evt

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.store import StoreError, read_instance, send_instances
from simulations.transport.errors import SendError
from tests.conftest import free_port
from tests.transport.dicom_files import write_ct_series


class ScriptedScp:
    """A pynetdicom Storage SCP answering each instance (by Instance Number) from a script of statuses.

    ``script[n]`` lists the statuses for successive attempts at instance n; the last repeats.
    ``"abort"`` aborts the association instead of answering.
    """

    def __init__(self, script: dict[int, list[int | str]], **ae_options: Any) -> None:
        self.script = script
        self.attempts: Counter[int] = Counter()
        self.stored: list[str] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="SCRIPTED")
        for name, value in ae_options.items():
            setattr(ae, name, value)
        ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
        handlers = [(evt.EVT_C_STORE, self.handle_store)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.peer = DicomPeer("127.0.0.1", self.server.server_address[1], "SCRIPTED", timeout=10)

    def handle_store(self, event: Any) -> int:
        number = int(event.dataset.InstanceNumber)
        with self._lock:
            attempt = self.attempts[number]
            self.attempts[number] += 1
        answers = self.script.get(number, [0x0000])
        answer = answers[min(attempt, len(answers) - 1)]
        if answer == "abort":
            event.assoc.abort()
            return 0xA700  # never sent: the association is gone
        assert isinstance(answer, int)
        if answer < 0xA000:
            with self._lock:
                self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return answer


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    return write_ct_series(tmp_path / "series", count=5)


def _store_error(scp: ScriptedScp, files: list[Path], **options: Any) -> StoreError:
    """The StoreError that sending ``files`` to ``scp`` must raise (the SCP is shut down after)."""
    try:
        with pytest.raises(StoreError) as caught:
            send_instances(scp.peer, files, **options)
    finally:
        scp.server.shutdown()
    return caught.value


def _numbered(results: list[Any]) -> dict[int, Any]:
    return {int(pydicom.dcmread(r.path, stop_before_pixels=True).InstanceNumber): r for r in results}


def test_it_records_each_status_and_retries_only_curable_failures(series: list[Path]) -> None:
    scp = ScriptedScp({1: [0xB000], 2: [0xA700], 3: [0xC000, 0x0000], 4: [0xA900], 5: [0xB007]})
    try:
        results = send_instances(scp.peer, series, retries=2)
    finally:
        scp.server.shutdown()
    by_number = _numbered(results)

    assert (by_number[1].status, by_number[1].category, by_number[1].attempts) == (0xB000, "warning", 1)
    # out of resources: tried 1 + 2 retries, still failing
    assert (by_number[2].status, by_number[2].category, by_number[2].attempts) == (0xA700, "failure", 3)
    assert "Out of Resources" in by_number[2].message
    # cannot understand once, then stored on the retry
    assert (by_number[3].status, by_number[3].category, by_number[3].attempts) == (0x0000, "success", 2)
    # data set does not match SOP class: permanent, not retried
    assert (by_number[4].status, by_number[4].category, by_number[4].attempts) == (0xA900, "failure", 1)
    assert (by_number[5].status, by_number[5].category) == (0xB007, "warning")
    assert scp.attempts == Counter({1: 1, 2: 3, 3: 2, 4: 1, 5: 1})
    assert [r.stored for r in results].count(True) == 3


def test_it_keeps_what_was_stored_when_the_peer_aborts_mid_study(series: list[Path]) -> None:
    scp = ScriptedScp({3: ["abort"]})
    error = _store_error(scp, series, retries=1)

    assert isinstance(error, SendError) and error.permanent is False
    assert "A-ABORT" in error.message or "closed the connection" in error.message
    assert sorted(r.sop_instance_uid for r in error.results if r.stored) == sorted(scp.stored)
    assert [r.path for r in error.results] == series[:2]
    assert [ref.path for ref in error.unsent] == series[2:]


def test_it_raises_a_permanent_error_when_the_association_is_rejected(series: list[Path]) -> None:
    error = _store_error(ScriptedScp({}, require_calling_aet=["FRIEND"]), series)

    assert error.permanent is True
    assert "rejected the association permanently" in error.message
    assert "calling AE title not recognised" in error.message
    assert error.results == [] and len(error.unsent) == 5


def test_it_raises_a_transient_error_when_no_peer_listens(series: list[Path]) -> None:
    with pytest.raises(StoreError) as caught:
        send_instances(DicomPeer("127.0.0.1", free_port(), "NOBODY", timeout=3), series)

    assert caught.value.permanent is False
    assert "cannot connect to NOBODY@127.0.0.1" in caught.value.message
    assert [ref.path for ref in caught.value.unsent] == series


def test_it_rejects_a_file_that_is_not_dicom_before_opening_any_association(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello, not a DICOM file")

    with pytest.raises(ValueError, match="not a readable DICOM file"):
        send_instances(DicomPeer("127.0.0.1", free_port(), "NOBODY"), [junk])


class RecordingScp(ScriptedScp):
    """Keeps each data set's bytes as they arrived (before pynetdicom decodes them); ``before_answer`` runs
    before each answer with the instance number."""

    def __init__(self, *args: Any, before_answer: Callable[[int], None] | None = None, **kwargs: Any) -> None:
        self.received: dict[int, bytes] = {}
        self.before_answer = before_answer
        super().__init__(*args, **kwargs)

    def handle_store(self, event: Any) -> int:
        number = int(event.dataset.InstanceNumber)
        self.received[number] = event.request.DataSet.getvalue()
        if self.before_answer is not None:
            self.before_answer(number)
        return super().handle_store(event)


def _open_paths() -> set[str]:
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return paths


def test_a_data_set_goes_out_by_sendfile_in_pdvs_the_peer_fits_and_arrives_byte_for_byte(
        series: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = socket.socket.sendfile

    def counted(self: socket.socket, file: Any, offset: int = 0, count: int | None = None) -> int:
        calls.append(count or 0)
        return real(self, file, offset, count)

    monkeypatch.setattr(socket.socket, "sendfile", counted)
    scp = RecordingScp({}, maximum_pdu_size=4096)  # data sets of ~9 KB: three PDVs each
    try:
        results = send_instances(scp.peer, series)
    finally:
        scp.server.shutdown()
    assert [r.status for r in results] == [0x0000] * 5
    for path in series:
        ref = read_instance(path)
        assert scp.received[int(pydicom.dcmread(path).InstanceNumber)] == path.read_bytes()[ref.dataset_offset:]
    sizes = [p.stat().st_size - read_instance(p).dataset_offset for p in series]
    assert len(calls) == sum(-(-size // (4096 - 6)) for size in sizes) and max(calls) == 4096 - 6
    assert not {str(p) for p in series} & _open_paths()  # every file closed once sent


def test_a_file_cut_short_while_it_is_sent_closes_the_connection_and_leaves_it_unsent(series: list[Path]) -> None:
    second = series[1]

    def cut_the_next_file(number: int) -> None:
        if number == 1:  # the sender opened instance 2 (and took its size) as soon as instance 1 was out
            time.sleep(0.3)
            os.truncate(second, second.stat().st_size // 2)

    scp = RecordingScp({}, before_answer=cut_the_next_file)
    error = _store_error(scp, series, retries=1)
    assert "was cut short while being sent" in error.message and str(second) in error.message
    assert error.permanent is False
    assert [r.path for r in error.results if r.stored] == series[:1]
    assert [ref.path for ref in error.unsent] == series[1:]
    assert 2 not in scp.received  # the peer never took the short PDV for a data set
    assert not {str(p) for p in series} & _open_paths()
