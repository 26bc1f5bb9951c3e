"""The Storage SCP's spool file: every byte as received, written past the page cache when it is flushed anyway."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from simulations.transport.dimse import spool
from simulations.transport.dimse.spool import SpooledDataSet

PREFIX = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x00\x00\x00\x00"

SIZES = [0, 1, 4095, 4096, 4097, spool.BLOCK - len(PREFIX), spool.BLOCK - len(PREFIX) + 1, 3 * spool.BLOCK + 12345]


def _direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def _fragments(data: bytes, rng: random.Random) -> list[memoryview]:
    """``data`` cut as PDVs arrive: pieces of 1 byte to about a PDU (16 KiB–1 MiB) each."""
    view, out, at = memoryview(data), [], 0
    while at < len(data):
        n = rng.choice([1, 7, 4096, 16_372, 65_524, 1_048_564])
        out.append(view[at:at + n])
        at += n
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "buffered"])
def test_a_spooled_data_set_is_the_received_bytes_exactly(tmp_path: Path, size: int, durable: bool) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    spooled = SpooledDataSet(tmp_path / "a.part", PREFIX, durable=durable)
    assert spooled.direct == (durable and _direct_supported(tmp_path))
    for fragment in _fragments(data, rng):
        spooled.add(fragment)
    spooled.finish()
    assert spooled.error is None
    assert (tmp_path / "a.part").read_bytes() == PREFIX + data
    assert spooled.size == len(PREFIX) + size


def test_a_spool_that_must_leave_direct_io_midway_keeps_every_byte(tmp_path: Path) -> None:
    """A file system may refuse a direct write after accepting the open: the rest goes through the page cache,
    after the blocks already written."""
    if not _direct_supported(tmp_path):
        pytest.skip(f"{tmp_path} does not take O_DIRECT: the spool writes through the page cache there")
    rng = random.Random(3)
    data = rng.randbytes(2 * spool.BLOCK + 777)
    spooled = SpooledDataSet(tmp_path / "b.part", PREFIX, durable=True)
    spooled.add(memoryview(data)[:spool.BLOCK + 5])  # one block written directly, five bytes gathered
    spooled._leave_direct()  # what a refused write does  # noqa: SLF001
    spooled.add(memoryview(data)[spool.BLOCK + 5:])
    spooled.finish()
    assert spooled.error is None and not spooled.direct
    assert (tmp_path / "b.part").read_bytes() == PREFIX + data


def test_a_spool_whose_folder_is_gone_reports_the_error_and_keeps_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    spooled = SpooledDataSet(blocker / "c.part", PREFIX, durable=True)  # a file where the folder should be
    spooled.add(memoryview(b"x" * 10))
    spooled.finish()
    assert isinstance(spooled.error, OSError)
    spooled.discard()
    assert blocker.read_bytes() == b""


def test_discarding_a_spool_removes_its_file_and_reuses_its_buffer(tmp_path: Path) -> None:
    spooled = SpooledDataSet(tmp_path / "d.part", PREFIX, durable=True)
    spooled.add(memoryview(b"y" * 5000))
    buffer = spooled._buffer  # noqa: SLF001
    spooled.discard()
    assert not (tmp_path / "d.part").exists()
    if buffer is not None:  # direct: the next spool takes the same warm buffer
        again = SpooledDataSet(tmp_path / "e.part", PREFIX, durable=True)
        assert again._buffer is buffer  # noqa: SLF001
        again.discard()


def _read_bytes() -> int:
    """Bytes this process has had read from storage (``/proc/self/io``: readahead included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no read_bytes")


def test_checking_a_directly_written_instance_reads_its_headers_not_the_whole_file(tmp_path: Path) -> None:
    """The SCP checks each stored file by walking its element headers. Written past the page cache, the file
    is read from disk for that walk: a page per header, not the whole file through readahead."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian

    from simulations.transport.dimse.integrity import check_dataset
    from tests.transport.dicom_files import write_ct_series

    if not _direct_supported(tmp_path):
        pytest.skip(f"{tmp_path} does not take O_DIRECT: a spooled file stays in the page cache there")
    source = write_ct_series(tmp_path / "src", count=1, rows=1024, columns=1024)[0]  # 2 MiB of pixels
    ds = dcmread(source, stop_before_pixels=True)
    data = source.read_bytes()
    offset = 132 + 12 + int.from_bytes(data[140:144], "little")  # past the File Meta group
    spooled = SpooledDataSet(tmp_path / "f.part", data[:offset], durable=True)
    assert spooled.direct
    view = memoryview(data)
    for at in range(offset, len(data), 16_372):
        spooled.add(view[at:at + 16_372])
    spooled.finish()
    before = _read_bytes()
    facts, problem = check_dataset(spooled.path, offset, ExplicitVRLittleEndian, sop_class_uid=ds.SOPClassUID,
                                   sop_instance_uid=ds.SOPInstanceUID)
    read = _read_bytes() - before
    assert problem is None and facts.sop_instance_uid == ds.SOPInstanceUID
    assert 0 < read <= 64 * 1024, f"{read} bytes read from disk to check a {len(data)}-byte file"


def test_the_check_walks_the_spools_head_and_reads_nothing_back(tmp_path: Path) -> None:
    """The spool keeps the file's first bytes as written: the check walks them and reads nothing from disk,
    with what it learns and the problems it finds the same as walking the file."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian

    from simulations.transport.dimse.integrity import check_dataset
    from tests.transport.dicom_files import write_ct_series

    source = write_ct_series(tmp_path / "src", count=1, rows=512, columns=512)[0]
    ds = dcmread(source, stop_before_pixels=True)
    data = source.read_bytes()
    offset = 132 + 12 + int.from_bytes(data[140:144], "little")
    for name, length in (("whole", len(data)), ("cut", offset + (len(data) - offset) * 6 // 10)):
        spooled = SpooledDataSet(tmp_path / f"{name}.part", data[:offset], durable=True)
        spooled.add(memoryview(data)[offset:length])
        spooled.finish()
        assert bytes(spooled.head) == data[:spool.HEAD] and spooled.size == length
        before = _read_bytes()
        walked = check_dataset(spooled.path, offset, ExplicitVRLittleEndian, sop_class_uid=ds.SOPClassUID,
                               sop_instance_uid=ds.SOPInstanceUID, head=spooled.head, size=spooled.size)
        assert _read_bytes() == before
        from_file = check_dataset(spooled.path, offset, ExplicitVRLittleEndian, sop_class_uid=ds.SOPClassUID,
                                  sop_instance_uid=ds.SOPInstanceUID)
        assert walked == from_file
        if name == "whole":
            assert walked[1] is None and walked[0].sop_instance_uid == ds.SOPInstanceUID
        else:
            assert walked[1] is not None and "cut short" in walked[1].message


def test_a_head_shorter_than_the_headers_sends_the_check_to_the_file(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian

    from simulations.transport.dimse.integrity import check_dataset
    from tests.transport.dicom_files import write_ct_series

    source = write_ct_series(tmp_path / "src", count=1)[0]
    ds = dcmread(source, stop_before_pixels=True)
    data = source.read_bytes()
    offset = 132 + 12 + int.from_bytes(data[140:144], "little")
    for cut in (offset + 1, offset + 9, offset + 200):  # inside a header, inside a value, a few elements in
        facts, problem = check_dataset(source, offset, ExplicitVRLittleEndian, sop_class_uid=ds.SOPClassUID,
                                       sop_instance_uid=ds.SOPInstanceUID, head=data[:cut], size=len(data))
        assert problem is None and facts.sop_instance_uid == ds.SOPInstanceUID
        assert facts.study_instance_uid == ds.StudyInstanceUID
