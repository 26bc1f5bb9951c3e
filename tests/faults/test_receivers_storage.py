"""The Storage SCP under concurrency, broken data sets and resends (issue 13, "Data integrity").

Several SCP processes share one folder (as ``manage.py serve`` on several machines would); data sets
cut short must be refused with nothing kept; a SOP Instance UID sent twice follows the configured
duplicate policy and says so. Peers are our own SCU and raw sockets for what no SCU would send.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.store import read_instance, _Link, _propose, send_instances
from simulations.transport.dimse.upper_layer import dimse_buffers, encode_command
from tests.conftest import require_binary
from tests.dcmtk import DCMTK_ENV
from tests.transport.dicom_files import ct_dataset, dataset_bytes, write_ct_series, write_file

REPO = Path(__file__).resolve().parents[2]

# One Storage SCP in its own process, on the folder given; prints its port, stops when stdin closes.
_SCP_PROCESS = """
import sys
from pathlib import Path
from simulations.transport.dimse.storage_scp import StorageScp
scp = StorageScp(storage_dir=Path(sys.argv[1]), ae_title="SHARED_PACS")
scp.start()
print(scp.port, flush=True)
sys.stdin.read()
scp.stop()
"""


@pytest.fixture
def shared_scps(tmp_path: Path) -> Iterator[tuple[Path, list[DicomPeer]]]:
    """Three Storage SCP processes writing into one shared folder."""
    folder = tmp_path / "shared"
    folder.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-c", _SCP_PROCESS, str(folder)], cwd=REPO, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        peers = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip().isdigit(), f"SCP process did not start: {line!r}"
            peers.append(DicomPeer("127.0.0.1", int(line), "SHARED_PACS"))
        yield folder, peers
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _interleaved(peers: list[DicomPeer], files: list[Path]) -> list[int]:
    """Every SCP receives the start of one instance per association before any data set ends.

    Each SCP then has its first spool files open at the same moment: the schedule that let two
    processes numbering their spool files from 1 write into each other's files.
    """
    links = []
    for peer, path in zip(peers * (len(files) // len(peers)), files):
        ref = read_instance(path)
        link = _Link(peer, max_pdu=16384)
        accepted = link.associate(_propose([ref]))
        context_id = min(cx for cx, (_, ts) in accepted.items() if ts == ref.transfer_syntax_uid)
        command = encode_command(((0x0002, ref.sop_class_uid), (0x0100, 0x0001), (0x0110, 1), (0x0700, 0),
                                  (0x0800, 0), (0x1000, ref.sop_instance_uid)))
        buffers = dimse_buffers(context_id, command, path.read_bytes()[ref.dataset_offset :], 8192)
        assert link.wire is not None
        link.wire.send(buffers[: len(buffers) // 2])
        links.append((link, buffers[len(buffers) // 2 :]))
    time.sleep(0.3)  # every SCP has opened its spool files
    for link, rest in links:
        assert link.wire is not None
        link.wire.send(rest)
    statuses = []
    for link, _ in links:
        statuses.append(link.read_store_response(1)[0])
        link.release()
    return statuses


def test_several_scp_processes_on_one_folder_keep_every_instance_under_its_own_name(
    tmp_path: Path, shared_scps: tuple[Path, list[DicomPeer]]
) -> None:
    folder, peers = shared_scps
    interleaved = write_ct_series(tmp_path / "interleaved", count=3 * len(peers), rows=128, columns=128, seed=99)
    # Then three senders per SCP, each with its own study, four associations each: 36
    # associations writing 128 KiB instances into one folder at once.
    batches = [
        (peer, write_ct_series(tmp_path / f"sender{n}", count=8, rows=256, columns=256, seed=100 + n))
        for n, peer in enumerate(peer for peer in peers for _ in range(3))
    ]

    statuses = _interleaved(peers, interleaved)
    with ThreadPoolExecutor(len(batches)) as pool:
        outcomes = list(pool.map(lambda batch: send_instances(batch[0], batch[1], associations=4), batches))

    sent = {pydicom.dcmread(path).SOPInstanceUID: path for path in [*interleaved, *(f for _, b in batches for f in b)]}
    statuses += [r.status for results in outcomes for r in results]
    assert statuses == [0x0000] * len(sent)
    received = sorted(folder.glob("*/*.dcm"))
    assert len(received) == len(sent) == 9 + 72
    for path in received:
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == path.stem, f"{path.name} holds {ds.SOPInstanceUID}"
        assert ds.StudyInstanceUID == path.parent.name
        assert dataset_bytes(path) == dataset_bytes(sent[path.stem])
    assert list((folder / ".incoming").iterdir()) == []


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StorageScp]:
    with StorageScp(storage_dir=tmp_path / "store") as server:
        yield server


def _send_raw(peer: DicomPeer, path: Path, dataset: bytes, *, sop_instance: str | None = None) -> tuple[int, str]:
    """One C-STORE of ``dataset`` (any bytes) for the instance in ``path``; returns (status, comment)."""
    ref = read_instance(path)
    link = _Link(peer, max_pdu=0)
    accepted = link.associate(_propose([ref]))
    context_id = min(cx for cx, (_, ts) in accepted.items() if ts == ref.transfer_syntax_uid)
    try:
        link.send_store(context_id, ref.sop_class_uid, sop_instance or ref.sop_instance_uid, dataset, 1)
        return link.read_store_response(1)
    finally:
        link.release()


def _nothing_kept(scp: StorageScp) -> bool:
    return not list(scp.storage_dir.rglob("*.dcm")) and list(scp.spool_dir.iterdir()) == [] and scp.stored() == []


def test_a_data_set_cut_at_60_percent_is_refused_and_nothing_is_kept(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1, rows=256, columns=256)  # 131,072 pixel bytes
    whole = dataset_bytes(path)

    status, comment = _send_raw(scp.peer, path, whole[: len(whole) * 6 // 10])

    assert status == 0xC000
    assert "cut short" in comment
    assert _nothing_kept(scp)


def test_pixel_data_shorter_than_rows_times_columns_is_refused_and_nothing_is_kept(
    tmp_path: Path, scp: StorageScp
) -> None:
    ds = ct_dataset(rng=random.Random(5), study_uid="1.2.826.0.1.3680043.10.1.5",
                    series_uid="1.2.826.0.1.3680043.10.1.6", instance_number=1, rows=64, columns=64)
    ds.PixelData = ds.PixelData[: 64 * 64]  # half the pixels, a well-formed element
    path = write_file(tmp_path / "short.dcm", ds)

    status, comment = _send_raw(scp.peer, path, dataset_bytes(path))

    assert status == 0xA900
    assert "Pixel Data holds 4096 bytes" in comment
    assert _nothing_kept(scp)


def test_an_undefined_length_sequence_without_its_end_is_refused(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1)
    whole = dataset_bytes(path)
    # An undefined-length sequence after the last element, cut before its delimiter
    sequence = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    broken = whole + sequence + item

    status, _ = _send_raw(scp.peer, path, broken)

    assert status == 0xC000
    assert _nothing_kept(scp)


def test_a_data_set_that_is_another_instance_than_the_command_names_is_refused(
    tmp_path: Path, scp: StorageScp
) -> None:
    first, second = write_ct_series(tmp_path / "series", count=2)

    status, comment = _send_raw(scp.peer, first, dataset_bytes(second))

    assert status == 0xA900
    assert "SOP Instance UID" in comment
    assert _nothing_kept(scp)


def test_an_affected_sop_instance_uid_that_is_no_uid_is_refused(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1)

    status, _ = _send_raw(scp.peer, path, dataset_bytes(path), sop_instance="../../etc/passwd")

    assert status == 0x0117
    assert _nothing_kept(scp)


def _resend_changed(tmp_path: Path, peer: DicomPeer) -> tuple[Path, list[int]]:
    """Send one instance, then a changed copy with the same SOP Instance UID; returns the first file and statuses."""
    [path] = write_ct_series(tmp_path / "series", count=1)
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "RESENT COPY"
    again = tmp_path / "again.dcm"
    ds.save_as(again, enforce_file_format=True)
    results = [send_instances(peer, [p], retries=2)[0] for p in (path, again)]
    assert results[1].attempts == 1  # a duplicate's answer is final: never retried
    return path, [r.status or 0 for r in results]


def test_a_resent_instance_keeps_the_first_copy_by_default_and_answers_a_warning(
    tmp_path: Path, scp: StorageScp, caplog: pytest.LogCaptureFixture
) -> None:
    path, statuses = _resend_changed(tmp_path, scp.peer)

    assert statuses == [0x0000, 0xB006]
    [kept] = scp.storage_dir.glob("*/*.dcm")
    assert pydicom.dcmread(kept).SeriesDescription == pydicom.dcmread(path).SeriesDescription
    [duplicate] = scp.duplicates()
    assert duplicate.duplicate == "kept-first" and duplicate.path == kept
    assert "received again" in caplog.text and "keep-first" in caplog.text
    assert list(scp.spool_dir.iterdir()) == []


def test_a_resent_instance_replaces_the_first_under_keep_last_and_is_recorded(tmp_path: Path) -> None:
    with StorageScp(storage_dir=tmp_path / "store", duplicates="keep-last") as server:
        _, statuses = _resend_changed(tmp_path, server.peer)
        duplicates = server.duplicates()

    assert statuses == [0x0000, 0x0000]
    [kept] = server.storage_dir.glob("*/*.dcm")
    assert pydicom.dcmread(kept).SeriesDescription == "RESENT COPY"
    assert [d.duplicate for d in duplicates] == ["replaced"]


def test_a_resent_instance_is_refused_under_reject(tmp_path: Path) -> None:
    with StorageScp(storage_dir=tmp_path / "store", duplicates="reject") as server:
        path, statuses = _resend_changed(tmp_path, server.peer)

    assert statuses == [0x0000, 0x0111]
    [kept] = server.storage_dir.glob("*/*.dcm")
    assert pydicom.dcmread(kept).SeriesDescription == pydicom.dcmread(path).SeriesDescription
    assert list(server.spool_dir.iterdir()) == []


def test_an_unknown_duplicate_policy_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep-first, keep-last, reject"):
        StorageScp(storage_dir=tmp_path, duplicates="overwrite")  # type: ignore[arg-type]


def test_the_same_instance_arriving_at_two_scps_at_once_is_kept_once(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    files = write_ct_series(tmp_path / "series", count=20)
    with StorageScp(storage_dir=folder) as one, StorageScp(storage_dir=folder) as two:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda peer: send_instances(peer, files), (one.peer, two.peer)))
        duplicates = len(one.duplicates()) + len(two.duplicates())

    statuses = sorted(r.status or 0 for batch in results for r in batch)
    assert statuses == [0x0000] * 20 + [0xB006] * 20  # each instance stored once, the other copy said so
    assert duplicates == 20
    assert len(list(folder.glob("*/*.dcm"))) == 20


@pytest.mark.interop
def test_dcmtk_storescu_sending_a_file_twice_is_told_the_first_copy_is_kept(tmp_path: Path, scp: StorageScp) -> None:
    binary = require_binary("storescu")
    [path] = write_ct_series(tmp_path / "series", count=1)

    done = subprocess.run(
        [binary, "-v", "-aet", "MODALITY1", "-aec", scp.ae_title, "127.0.0.1", str(scp.port), str(path), str(path)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=30,
    )

    assert done.returncode == 0, done.stderr
    assert "Warning: ElementsDiscarded" in done.stderr  # storescu reports the 0xB006 warning
    assert len(list(scp.storage_dir.glob("*/*.dcm"))) == 1
    [duplicate] = scp.duplicates()
    assert duplicate.calling_ae_title == "MODALITY1"


def test_sequences_nested_without_end_are_refused_without_a_traceback(
    tmp_path: Path, scp: StorageScp, caplog: pytest.LogCaptureFixture
) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1)
    sequence = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    hostile = dataset_bytes(path) + (sequence + item) * 5000  # 5,000 levels deep, never closed

    status, _ = _send_raw(scp.peer, path, hostile)

    assert status == 0xC000
    assert _nothing_kept(scp)
    assert not any(record.exc_info for record in caplog.records)


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, RLELossless], ids=["implicit", "rle"])
def test_a_data_set_cut_short_is_refused_in_other_transfer_syntaxes_too(
    tmp_path: Path, scp: StorageScp, transfer_syntax: str
) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1, rows=128, columns=128, transfer_syntax=transfer_syntax)
    whole = dataset_bytes(path)

    assert _send_raw(scp.peer, path, whole[: len(whole) * 6 // 10])[0] == 0xC000
    assert _nothing_kept(scp)
    assert _send_raw(scp.peer, path, whole)[0] == 0x0000  # and the whole one is stored


def test_spool_files_of_a_killed_scp_on_this_host_are_swept_at_start_and_no_others(tmp_path: Path) -> None:
    from simulations.transport.dimse.storage_scp import _HOST

    folder = tmp_path / "shared"
    with StorageScp(storage_dir=folder) as first:
        spool = first.spool_dir
    # A real SCP process killed with SIGKILL in the middle of a transfer leaves its spool file behind
    victim = subprocess.Popen([sys.executable, "-c", _SCP_PROCESS, str(folder)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    port = int(victim.stdout.readline())
    [path] = write_ct_series(tmp_path / "series", count=1, rows=128, columns=128)
    ref = read_instance(path)
    link = _Link(DicomPeer("127.0.0.1", port, "SHARED_PACS"), max_pdu=16384)
    accepted = link.associate(_propose([ref]))
    context_id = min(cx for cx, (_, ts) in accepted.items() if ts == ref.transfer_syntax_uid)
    command = encode_command(((0x0002, ref.sop_class_uid), (0x0100, 0x0001), (0x0110, 1), (0x0700, 0),
                              (0x0800, 0), (0x1000, ref.sop_instance_uid)))
    assert link.wire is not None
    link.wire.send(dimse_buffers(context_id, command, dataset_bytes(path), 8192)[:4])
    deadline = time.monotonic() + 5
    while not list(spool.glob(f"{_HOST}-{victim.pid}-*.part")) and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.kill()
    victim.wait()
    link.close()
    [orphan] = spool.glob(f"{_HOST}-{victim.pid}-*.part")
    other_host = spool / "another-host-1-0123456789abcdef.part"
    other_host.write_bytes(b"being written elsewhere")
    living = spool / f"{_HOST}-{os.getpid()}-0123456789abcdef.part"
    living.write_bytes(b"being written by a live process")

    with StorageScp(storage_dir=folder):
        pass

    assert not orphan.exists()
    assert other_host.exists() and living.exists()
