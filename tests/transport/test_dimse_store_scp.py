"""Our Storage SCP (PS3.4 Annex B) receiving from dcmtk storescu and from our own SCU."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.storage_scp import StorageScp, StoredInstance
from simulations.transport.dimse.store import read_instance, _Link, _propose, send_instances
from simulations.transport.dimse.upper_layer import dimse_buffers, encode_command
from simulations.transport.errors import SendError
from tests.conftest import require_binary
from tests.transport.dicom_files import dataset_bytes, write_ct_series


@pytest.fixture
def received() -> list[StoredInstance]:
    return []


@pytest.fixture
def scp(tmp_path: Path, received: list[StoredInstance]) -> Iterator[StorageScp]:
    server = StorageScp(storage_dir=tmp_path / "store", on_stored=received.append, history=3)
    server.start()
    yield server
    server.stop()


@pytest.mark.interop
def test_files_sent_by_dcmtk_storescu_land_in_study_folders_unchanged(
    tmp_path: Path, scp: StorageScp, received: list[StoredInstance]
) -> None:
    binary = require_binary("storescu")
    files = write_ct_series(tmp_path / "series", count=3)
    done = subprocess.run(
        [binary, "-aet", "MODALITY1", "-aec", scp.ae_title, "127.0.0.1", str(scp.port), *map(str, files)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr

    assert len(received) == 3
    for path, instance in zip(files, received):
        original = pydicom.dcmread(path)
        assert instance.path == scp.storage_dir / original.StudyInstanceUID / f"{original.SOPInstanceUID}.dcm"
        assert (instance.sop_class_uid, instance.sop_instance_uid) == (CTImageStorage, original.SOPInstanceUID)
        assert instance.study_instance_uid == original.StudyInstanceUID
        assert instance.calling_ae_title == "MODALITY1"
        assert instance.size == instance.path.stat().st_size
        assert dataset_bytes(instance.path) == dataset_bytes(path)
        meta = pydicom.dcmread(instance.path).file_meta
        assert meta.TransferSyntaxUID == instance.transfer_syntax_uid
        assert meta.SourceApplicationEntityTitle == "MODALITY1"
    assert not list(scp.storage_dir.rglob("*.part"))


def test_it_stores_compressed_instances_as_sent_and_remembers_a_bounded_history(
    tmp_path: Path, scp: StorageScp
) -> None:
    rle = write_ct_series(tmp_path / "rle", count=2, transfer_syntax=RLELossless, seed=11)
    plain = write_ct_series(tmp_path / "plain", count=2, seed=12)

    results = send_instances(scp.peer, [*rle, *plain])

    assert [r.status for r in results] == [0] * 4
    assert [r.transfer_syntax_uid for r in results] == [RLELossless] * 2 + [ExplicitVRLittleEndian] * 2
    kept = scp.find(results[1].sop_instance_uid)
    assert kept is not None and dataset_bytes(kept.path) == dataset_bytes(rle[1])
    assert [s.sop_instance_uid for s in scp.stored()] == [r.sop_instance_uid for r in results[1:]]  # history=3
    assert scp.find(results[0].sop_instance_uid) is None


def test_it_answers_out_of_resources_when_it_cannot_write(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1)
    study = pydicom.dcmread(path).StudyInstanceUID
    (scp.storage_dir / study).write_text("a file where the study folder should be")

    [result] = send_instances(scp.peer, [path], retries=1)

    assert (result.status, result.category, result.attempts) == (0xA700, "failure", 2)
    assert scp.stored() == []
    assert list(scp.spool_dir.iterdir()) == []  # the spooled copies were removed


def test_it_refuses_an_instance_without_study_instance_uid(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1)
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)

    [result] = send_instances(scp.peer, [path])

    assert (result.status, result.category, result.attempts) == (0xA900, "failure", 1)


def test_it_serves_parallel_associations(tmp_path: Path, scp: StorageScp) -> None:
    files = write_ct_series(tmp_path / "series", count=6)

    results = send_instances(scp.peer, files, associations=3)

    assert [r.status for r in results] == [0] * 6
    assert len(list(scp.storage_dir.rglob("*.dcm"))) == 6


def test_it_rejects_transiently_when_too_many_associations_are_open(tmp_path: Path) -> None:
    full = StorageScp(storage_dir=tmp_path / "store", max_associations=0)
    full.start()
    try:
        with pytest.raises(SendError) as caught:
            echo(full.peer)
    finally:
        full.stop()

    assert caught.value.permanent is False
    assert "local limit exceeded" in caught.value.message


def test_it_reassembles_data_sets_split_over_many_pdus(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "series", count=2, rows=160, columns=160)  # 51 KiB of pixels each
    small = StorageScp(storage_dir=tmp_path / "store", max_pdu=16384)
    small.start()
    try:
        results = send_instances(small.peer, files)
        stored = [small.find(r.sop_instance_uid) for r in results]
    finally:
        small.stop()

    assert [r.status for r in results] == [0, 0]
    for path, instance in zip(files, stored):
        assert instance is not None
        assert dataset_bytes(instance.path) == dataset_bytes(path)


def test_it_discards_a_data_set_cut_off_by_an_abort(tmp_path: Path, scp: StorageScp) -> None:
    [path] = write_ct_series(tmp_path / "series", count=1, rows=128, columns=128)
    ref = read_instance(path)
    link = _Link(scp.peer, max_pdu=16384)
    accepted = link.associate(_propose([ref]))
    context_id = min(cx for cx, (_, ts) in accepted.items() if ts == ref.transfer_syntax_uid)
    command = encode_command(((0x0002, ref.sop_class_uid), (0x0100, 0x0001), (0x0110, 1), (0x0700, 0),
                              (0x0800, 0), (0x1000, ref.sop_instance_uid)))
    buffers = dimse_buffers(context_id, command, path.read_bytes()[ref.dataset_offset :], 8192)
    assert link.wire is not None
    link.wire.send(buffers[:6])  # the command and two of four data set fragments
    deadline = time.monotonic() + 5
    while not list(scp.spool_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list(scp.spool_dir.iterdir())) == 1  # being written while it arrives

    link.wire.abort()
    while list(scp.spool_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)

    assert list(scp.spool_dir.iterdir()) == []
    assert scp.stored() == [] and not list(scp.storage_dir.rglob("*.dcm"))
