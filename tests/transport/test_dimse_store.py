"""C-STORE SCU (PS3.4 Annex B) against real peers: dcmtk storescp and pynetdicom SCPs on loopback."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless
from pynetdicom import AE, evt

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.store import read_instance, StoreError, StoreResult, send_instances
from tests.conftest import free_port, require_binary
from tests.transport.dicom_files import dataset_bytes, storescp, write_ct_series


@pytest.fixture
def dcmtk_peer(tmp_path: Path) -> Iterator[tuple[DicomPeer, Path]]:
    binary = require_binary("storescp")
    port = free_port()
    received = tmp_path / "received"
    with storescp(binary, received, port):
        yield DicomPeer("127.0.0.1", port, "STORESCP", timeout=10), received


class RecordingScp:
    """A pynetdicom Storage SCP that keeps what it receives and counts associations."""

    def __init__(self, syntaxes: list[str]) -> None:
        self.datasets: list[tuple[str, pydicom.Dataset]] = []
        self.associations = 0
        self._lock = threading.Lock()
        ae = AE(ae_title="RECORDER")
        ae.add_supported_context(CTImageStorage, syntaxes)
        self.server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self.handle_store), (evt.EVT_ACCEPTED, self.handle_accepted)],
        )
        self.peer = DicomPeer("127.0.0.1", self.server.server_address[1], "RECORDER", timeout=10)

    def handle_store(self, event: Any) -> int:
        with self._lock:
            self.datasets.append((str(event.context.transfer_syntax), event.dataset))
        return 0x0000

    def handle_accepted(self, event: Any) -> None:
        with self._lock:
            self.associations += 1


@pytest.fixture
def implicit_only_scp() -> Iterator[RecordingScp]:
    scp = RecordingScp([ImplicitVRLittleEndian])
    yield scp
    scp.server.shutdown()


@pytest.mark.interop
def test_it_stores_a_series_in_dcmtk_storescp_byte_for_byte(tmp_path: Path, dcmtk_peer: tuple[DicomPeer, Path]) -> None:
    peer, received = dcmtk_peer
    # 128x128x2 bytes: each data set spans three PDUs of storescp's 16 KiB maximum
    files = write_ct_series(tmp_path / "series", count=4, rows=128, columns=128)
    seen: list[StoreResult] = []

    results = send_instances(peer, files, on_result=seen.append)

    assert [r.status for r in results] == [0x0000] * 4
    assert {r.category for r in results} == {"success"}
    assert sorted(r.sop_instance_uid for r in seen) == sorted(r.sop_instance_uid for r in results)
    for path, result in zip(files, results):
        assert result.path == path and result.attempts == 1
        stored = received / f"CT.{result.sop_instance_uid}"
        assert dataset_bytes(stored) == dataset_bytes(path)


@pytest.mark.interop
def test_it_decompresses_rle_for_a_peer_that_accepts_only_uncompressed(
    tmp_path: Path, dcmtk_peer: tuple[DicomPeer, Path]
) -> None:
    peer, received = dcmtk_peer  # storescp accepts uncompressed syntaxes only unless told +xa
    [rle] = write_ct_series(tmp_path / "rle", count=1, transfer_syntax=RLELossless)

    [result] = send_instances(peer, [rle])

    assert result.status == 0x0000
    assert result.transfer_syntax_uid in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    stored = pydicom.dcmread(received / f"CT.{result.sop_instance_uid}")
    assert stored.file_meta.TransferSyntaxUID == result.transfer_syntax_uid
    assert np.array_equal(stored.pixel_array, pydicom.dcmread(rle).pixel_array)


@pytest.mark.interop
def test_it_reports_an_instance_it_can_neither_send_nor_convert(
    tmp_path: Path, dcmtk_peer: tuple[DicomPeer, Path]
) -> None:
    peer, received = dcmtk_peer
    [good] = write_ct_series(tmp_path / "good", count=1)
    [broken] = write_ct_series(tmp_path / "j2k", count=1, seed=7)
    ds = pydicom.dcmread(broken)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless  # storescp refuses it, and it cannot be decoded
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    ds.save_as(broken, enforce_file_format=True)

    results = send_instances(peer, [good, broken])

    by_path = {r.path: r for r in results}
    assert by_path[good].status == 0x0000
    failed = by_path[broken]
    assert failed.status is None and failed.category == "failure" and failed.attempts == 0
    assert "not sendable" in failed.message and JPEG2000Lossless in failed.message
    assert len(list(received.iterdir())) == 1


def test_it_re_encodes_explicit_vr_for_a_peer_that_accepts_only_implicit_vr(
    tmp_path: Path, implicit_only_scp: RecordingScp
) -> None:
    files = write_ct_series(tmp_path / "series", count=2)

    results = send_instances(implicit_only_scp.peer, files)

    assert [r.status for r in results] == [0, 0]
    assert {r.transfer_syntax_uid for r in results} == {ImplicitVRLittleEndian}
    assert [ts for ts, _ in implicit_only_scp.datasets] == [ImplicitVRLittleEndian] * 2
    for path, (_, received) in zip(files, implicit_only_scp.datasets):
        original = pydicom.dcmread(path)
        assert received.SOPInstanceUID == original.SOPInstanceUID
        assert received.PixelData == original.PixelData


def test_it_opens_one_association_per_study_and_splits_a_study_over_parallel_associations(tmp_path: Path) -> None:
    scp = RecordingScp([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        first = write_ct_series(tmp_path / "one", count=3, seed=1)
        second = write_ct_series(tmp_path / "two", count=2, seed=2)
        results = send_instances(scp.peer, [*first, *second])
        assert scp.associations == 2
        assert [r.path for r in results] == [*first, *second]  # input order, whatever the wire order

        parallel = write_ct_series(tmp_path / "three", count=6, seed=3)
        results = send_instances(scp.peer, parallel, associations=3)
        assert scp.associations == 2 + 3
        assert [r.status for r in results] == [0] * 6
        assert len(scp.datasets) == 11
    finally:
        scp.server.shutdown()


def test_it_reads_only_the_header_to_describe_a_file(tmp_path: Path) -> None:
    [path] = write_ct_series(tmp_path / "s", count=1, transfer_syntax=ImplicitVRLittleEndian)
    ds = pydicom.dcmread(path)

    ref = read_instance(path)

    assert ref.sop_class_uid == CTImageStorage
    assert ref.sop_instance_uid == ds.SOPInstanceUID
    assert ref.study_instance_uid == ds.StudyInstanceUID
    assert ref.transfer_syntax_uid == ImplicitVRLittleEndian
    assert path.read_bytes()[ref.dataset_offset :] == dataset_bytes(path)


@pytest.mark.interop
def test_the_test_instances_are_valid_ct_images_for_dciodvfy(tmp_path: Path) -> None:
    binary = require_binary("dciodvfy")
    [path] = write_ct_series(tmp_path / "s", count=1)

    done = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=30)

    assert "CTImage" in done.stdout + done.stderr
    assert "Error" not in done.stderr, done.stderr


@pytest.mark.interop
def test_a_peer_that_stops_reading_mid_data_set_times_out_and_the_connection_is_closed(tmp_path: Path) -> None:
    binary = require_binary("storescp")
    port = free_port()
    small = write_ct_series(tmp_path / "small", count=1, study_uid="1.2.826.0.1.3680043.10.543.77")
    big = write_ct_series(tmp_path / "big", count=1, rows=4096, columns=4096, seed=2,  # 32 MB: over the socket buffers
                          study_uid="1.2.826.0.1.3680043.10.543.77")
    with storescp(binary, tmp_path / "received", port) as process:
        def stop_the_peer(result: Any) -> None:  # once the first instance is answered: the peer freezes
            process.send_signal(signal.SIGSTOP)

        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                send_instances(DicomPeer("127.0.0.1", port, "STORESCP", timeout=2), [*small, *big],
                               on_result=stop_the_peer)
            elapsed = time.monotonic() - started
        finally:
            process.send_signal(signal.SIGCONT)
    assert "took nothing for 2 s: the connection is closed" in caught.value.message, caught.value.message
    assert [r.stored for r in caught.value.results] == [True]
    assert [ref.path for ref in caught.value.unsent] == big
    assert elapsed < 10
