"""Is a received data set whole? One walk over its element headers, values left undecoded.

The Storage SCP writes a C-STORE data set to disk as its PDVs arrive and never decodes it. Before it
answers Success it must still know that what it keeps is the instance the command announced, and all
of it (PS3.4 B.2.2: the SCP stores the SOP Instance "in its entirety"). :func:`check_dataset` walks
every element header of the encoded data set (PS3.5 §7.1.2 explicit, §7.1.3 implicit VR; §7.5
sequences and items of defined or undefined length; §A.4 encapsulated Pixel Data fragments) and
reports the first problem:

* a truncated data set: an element, item or fragment that runs past the end of the file, an
  undefined-length sequence or item without its delimiter, bytes left over that are no element;
* Pixel Data shorter than Rows × Columns × Samples per Pixel × Number of Frames × Bits Allocated / 8
  (PS3.5 §8.1.1, PS3.3 C.7.6.3.1);
* a SOP Class / SOP Instance UID in the data set that differs from the C-STORE command's Affected
  SOP Class / Instance UID (PS3.7 §9.1.1.1): the file would be named after another instance.

Big endian and deflated transfer syntaxes (rare, retired or compressed as a whole) are read fully
with pydicom instead.

The same walk reads files too (:func:`file_elements`): the raw values of chosen elements of a stored file,
for verification to tell files whose checked elements are byte for byte those of a file it already checked.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

# VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1)
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_IMPLICIT_HEADER = struct.Struct("<HHI")  # tag, 4-byte length
_EXPLICIT_HEADER = struct.Struct("<HH2sH")  # tag, VR, 2-byte length
_LENGTH = struct.Struct("<I")
_MAX_DEPTH = 32  # nested undefined-length sequences; real IODs nest a handful
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD

# Top-level elements whose values the checks need (tag -> name), read as they pass by
_SOP_CLASS, _SOP_INSTANCE, _STUDY = 0x00080016, 0x00080018, 0x0020000D
_SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS = 0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100
_PIXEL_DATA = 0x7FE00010
# Float / Double Float / Pixel Data: where pydicom's ``stop_before_pixels`` stops reading
_PIXELS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})
_KNOWN_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_WANTED = frozenset({_SOP_CLASS, _SOP_INSTANCE, _STUDY, _SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS})

# What a problem means for the C-STORE status (PS3.4 Table B.2-1)
TRUNCATED = "cannot understand"  # 0xC000
MISMATCH = "does not match"  # 0xA900


@dataclass(frozen=True, slots=True)
class DatasetProblem:
    """Why a received data set may not be stored: ``kind`` is TRUNCATED or MISMATCH."""

    kind: str
    message: str


@dataclass(slots=True)
class DatasetFacts:
    """What the walk learnt on the way: the Study Instance UID (to file the instance) and the UIDs."""

    study_instance_uid: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    values: dict[int, bytes] = field(default_factory=dict)


class _Truncated(Exception):
    pass


def check_dataset(
    path: Path, offset: int, transfer_syntax: str, *, sop_class_uid: str, sop_instance_uid: str,
    head: bytes | bytearray = b"", size: int | None = None,
) -> tuple[DatasetFacts, DatasetProblem | None]:
    """Walk the data set stored in ``path`` from ``offset`` (after the File Meta group).

    ``head``, when given, is the file's first bytes as they were written and ``size`` its length: the walk
    reads those and opens the file only for a header past them (a data set whose elements before Pixel
    Data outgrow the head, encapsulated fragments). A file just written past the page cache (:mod:`.spool`)
    would otherwise be read back from disk, page by page, by a thread holding the GIL.

    Returns what was learnt and the first problem found (None when the data set is whole and is
    the instance the command named).
    """
    facts = DatasetFacts()
    implicit = _implicit_vr(transfer_syntax)
    if implicit is None:
        problem = _check_with_pydicom(path, facts)
        return facts, problem or _identity_problem(facts, sop_class_uid, sop_instance_uid)
    try:
        walked = _walk_dataset(memoryview(head), offset, size, implicit, facts) if head and size else None
    except _PastHead:
        walked = None
    if walked is None:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            if size <= offset:
                return facts, DatasetProblem(TRUNCATED, "the data set is empty")
            with _headers_map(file) as data:
                walked = _walk_dataset(data, offset, size, implicit, facts)
    if isinstance(walked, DatasetProblem):
        return facts, walked
    pixel_length, encapsulated = walked
    facts.study_instance_uid = _text(facts.values.get(_STUDY, b""))
    facts.sop_class_uid = _text(facts.values.get(_SOP_CLASS, b""))
    facts.sop_instance_uid = _text(facts.values.get(_SOP_INSTANCE, b""))
    problem = _identity_problem(facts, sop_class_uid, sop_instance_uid)
    if problem is None and pixel_length is not None and not encapsulated:
        problem = _pixel_problem(facts.values, pixel_length)
    return facts, problem


class _PastHead(Exception):
    """The walk of a file's head needs bytes after it."""


def _walk_dataset(data: mmap.mmap | memoryview, offset: int, size: int, implicit: bool, facts: DatasetFacts
                  ) -> tuple[int | None, bool] | DatasetProblem:
    """(Pixel Data's length, whether encapsulated) of the data set in ``data`` (``size`` bytes long: the file's,
    when ``data`` is only its head), the wanted values put in ``facts``; or the problem that cut the walk short.
    Raises :class:`_PastHead` when ``data`` is shorter than ``size`` and the walk needs a byte after it."""
    if size <= offset:
        return DatasetProblem(TRUNCATED, "the data set is empty")
    pixel_length: int | None = None
    encapsulated = False
    available = len(data)
    try:
        for tag, _, length, start, end in _elements(data, offset, size, implicit):
            if tag == _PIXEL_DATA:
                encapsulated = length == _UNDEFINED
                pixel_length = length
            elif tag in _WANTED:
                if end > available:
                    raise _PastHead
                facts.values[tag] = bytes(data[start:end])
    except _Truncated as exc:
        return DatasetProblem(TRUNCATED, str(exc))
    except struct.error:  # a header after the head (the walk checks every position against ``size`` first)
        if available >= size:
            raise
        raise _PastHead from None
    return pixel_length, encapsulated


def _headers_map(file: BinaryIO) -> mmap.mmap:
    """The file mapped for reading its element headers only: no readahead (``MADV_RANDOM``).

    A file not in the page cache (the Storage SCP writes past it, :mod:`.spool`) would otherwise be read
    whole from disk at the first page touched (readahead is 8 MiB on some disks): the walk needs the
    pages of a few headers, and one page each is what is read."""
    data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(data, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        data.madvise(mmap.MADV_RANDOM)
    return data


def _implicit_vr(transfer_syntax: str) -> bool | None:
    """Whether the walk reads ``transfer_syntax`` as implicit VR (True) or explicit VR (False), both little
    endian; None for a syntax it does not read (big endian, deflated) or no transfer syntax at all."""
    if transfer_syntax == ImplicitVRLittleEndian:
        return True
    try:
        return False if transfer_syntax == ExplicitVRLittleEndian or UID(transfer_syntax).is_encapsulated else None
    except ValueError:  # not a transfer syntax UID
        return None


def file_elements(path: Path, wanted: frozenset[int]) -> tuple[str, dict[int, tuple[bytes, bytes]]] | None:
    """The transfer syntax of a DICOM file and (VR, value bytes) of its ``wanted`` top-level elements.

    Every element header from the File Meta group up to Pixel Data (or the end) is walked, so the answer
    also says the file is well formed as far as pydicom's ``stop_before_pixels`` reads it. None when this
    walk cannot vouch for the file: no ``DICM`` preamble, a transfer syntax it does not read, an element
    cut short, a VR it does not know, or a first element whose encoding contradicts the transfer syntax
    (which pydicom would guess around); read such a file with pydicom, which says what is wrong with it.
    """
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        if size < 132:
            return None
        with _headers_map(file) as data:
            if data[128:132] != b"DICM":
                return None
            try:
                pos, transfer_syntax = _file_meta(data, size)
                implicit = _implicit_vr(transfer_syntax)
                if implicit is None or _looks_explicit(data, pos, size) == implicit:
                    return None
                values = _walk_to_pixels(data, pos, size, implicit, wanted)
            except _Truncated:
                return None
    return (transfer_syntax, values) if values is not None else None


def _file_meta(data: mmap.mmap, size: int) -> tuple[int, str]:
    """Where the data set starts after the File Meta group (PS3.10 §7.1, explicit VR little endian) and its
    Transfer Syntax UID ("" when absent)."""
    pos, transfer_syntax = 132, ""
    while pos + 8 <= size and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        tag, length, start, _ = _header(data, pos, size, False)
        if length == _UNDEFINED or start + length > size:
            raise _Truncated(f"the File Meta element {_tag(tag)} is cut short")
        if tag == 0x00020010:
            transfer_syntax = _text(bytes(data[start : start + length]))
        pos = start + length
    return pos, transfer_syntax


def _looks_explicit(data: mmap.mmap, pos: int, size: int) -> bool:
    """pydicom's guess (``filereader._is_implicit_vr``) from the first element: explicit VR when the two bytes
    after its tag are capital letters."""
    return pos + 6 <= size and all(0x40 < byte < 0x5B for byte in data[pos + 4 : pos + 6])


def _walk_to_pixels(data: mmap.mmap, pos: int, size: int, implicit: bool,
                    wanted: frozenset[int]) -> dict[int, tuple[bytes, bytes]] | None:
    """(VR, value bytes) of the ``wanted`` elements from ``pos`` up to Pixel Data; None at an unknown VR."""
    values: dict[int, tuple[bytes, bytes]] = {}
    for tag, vr, _, start, end in _elements(data, pos, size, implicit, stop=_PIXELS):
        if not implicit and vr not in _KNOWN_VRS:
            return None
        if tag in wanted:
            values[tag] = (vr, bytes(data[start:end]))
    return values


def _elements(data: mmap.mmap, pos: int, size: int, implicit: bool, *, stop: frozenset[int] = frozenset()
              ) -> Iterator[tuple[int, bytes, int, int, int]]:
    """(tag, VR, value length, value start, value end) of each top-level element from ``pos``, an undefined
    length skipped to its delimiter; ends at the data set's end or before an element whose tag is in ``stop``.
    Raises :class:`_Truncated` when an element is cut short."""
    while pos < size:
        tag, length, start, vr = _header(data, pos, size, implicit)
        if tag in stop:
            return
        if length == _UNDEFINED:
            end = _skip_undefined(data, start, size, implicit or vr == b"UN", tag, 1)
        else:
            end = start + length
            if end > size:
                raise _Truncated(f"cut short: {_tag(tag)} has {size - start} of its {length} bytes")
        yield tag, vr, length, start, end
        pos = end


def _header(data: mmap.mmap, pos: int, size: int, implicit: bool) -> tuple[int, int, int, bytes]:
    """(tag, value length, value start, VR) of the element at ``pos`` (PS3.5 §7.1)."""
    if pos + 8 > size:
        raise _Truncated(f"cut short: the data set ends inside an element header at byte {pos}")
    if implicit:
        group, element, length = _IMPLICIT_HEADER.unpack_from(data, pos)
        return group << 16 | element, length, pos + 8, b""
    # one unpack per element (the data set of an image has a hundred): the short form, corrected below
    group, element, vr, length = _EXPLICIT_HEADER.unpack_from(data, pos)
    tag = group << 16 | element
    if group == 0xFFFE:  # items and delimiters have no VR (PS3.5 §7.5)
        return tag, _LENGTH.unpack_from(data, pos + 4)[0], pos + 8, b""
    if vr in _LONG_VRS:
        if pos + 12 > size:
            raise _Truncated(f"cut short: the data set ends inside the header of {_tag(tag)}")
        return tag, _LENGTH.unpack_from(data, pos + 8)[0], pos + 12, vr
    return tag, length, pos + 8, vr


def _skip_undefined(data: mmap.mmap, pos: int, size: int, implicit: bool, owner: int, depth: int) -> int:
    """Skip the items of an undefined-length sequence or encapsulated Pixel Data; return the position
    after its Sequence Delimitation Item (PS3.5 §7.5.2, §A.4)."""
    if depth > _MAX_DEPTH:
        raise _Truncated(f"sequences nested more than {_MAX_DEPTH} deep in {_tag(owner)}")
    while True:
        tag, length, start, _ = _header(data, pos, size, True)
        if tag == 0xFFFE0000 | _SEQUENCE_END:
            return start
        if tag != 0xFFFE0000 | _ITEM:
            raise _Truncated(f"{_tag(owner)} holds {_tag(tag)} where an item or its end should be")
        if length == _UNDEFINED:
            pos = _skip_item(data, start, size, implicit, owner, depth)
            continue
        if start + length > size:
            raise _Truncated(f"cut short: an item of {_tag(owner)} has {size - start} of its {length} bytes")
        pos = start + length


def _skip_item(data: mmap.mmap, pos: int, size: int, implicit: bool, owner: int, depth: int) -> int:
    """Skip the elements of an undefined-length item; return the position after its delimiter."""
    while True:
        if pos >= size:
            raise _Truncated(f"cut short: an item of {_tag(owner)} has no Item Delimitation Item")
        tag, length, start, vr = _header(data, pos, size, implicit)
        if tag == 0xFFFE0000 | _ITEM_END:
            return start
        if length == _UNDEFINED:
            pos = _skip_undefined(data, start, size, implicit or vr == b"UN", tag, depth + 1)
            continue
        if start + length > size:
            raise _Truncated(f"cut short: {_tag(tag)} in {_tag(owner)} has {size - start} of its {length} bytes")
        pos = start + length


def _pixel_problem(values: dict[int, bytes], length: int) -> DatasetProblem | None:
    """Native Pixel Data must hold every pixel its attributes describe (PS3.5 §8.1.1)."""
    try:
        rows = _us(values[_ROWS])
        columns = _us(values[_COLUMNS])
        bits = _us(values[_BITS])
        samples = _us(values[_SAMPLES]) if _SAMPLES in values else 1
    except (KeyError, struct.error):
        return None  # without them there is nothing to compare with; the IOD check is not ours
    frames_text = _text(values.get(_FRAMES, b"1")) or "1"
    try:
        frames = int(frames_text)
    except ValueError:
        return DatasetProblem(MISMATCH, f"Number of Frames {frames_text!r} is not an integer")
    expected = (rows * columns * samples * frames * bits + 7) // 8
    if length < expected:
        return DatasetProblem(
            MISMATCH,
            f"Pixel Data holds {length} bytes, its attributes need {expected} (Rows {rows} × Columns {columns} "
            f"× Samples per Pixel {samples} × Number of Frames {frames} × Bits Allocated {bits} / 8)",
        )
    return None


def _identity_problem(facts: DatasetFacts, sop_class_uid: str, sop_instance_uid: str) -> DatasetProblem | None:
    if facts.sop_instance_uid != sop_instance_uid:
        return DatasetProblem(
            MISMATCH,
            f"SOP Instance UID differs from the command's: data set {facts.sop_instance_uid or '(none)'}, "
            f"command {sop_instance_uid}",
        )
    if sop_class_uid and facts.sop_class_uid != sop_class_uid:
        return DatasetProblem(
            MISMATCH,
            f"SOP Class UID differs from the command's: data set {facts.sop_class_uid or '(none)'}, "
            f"command {sop_class_uid}",
        )
    return None


def _check_with_pydicom(path: Path, facts: DatasetFacts) -> DatasetProblem | None:
    """Big endian / deflated: let pydicom read every element (and inflate), then compare pixels."""
    try:
        ds = dcmread(path)
        for elem in ds.iterall():
            _ = elem.value
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken data set
        return DatasetProblem(TRUNCATED, f"the data set cannot be read: {exc}")
    facts.study_instance_uid = str(ds.get("StudyInstanceUID", ""))
    facts.sop_class_uid = str(ds.get("SOPClassUID", ""))
    facts.sop_instance_uid = str(ds.get("SOPInstanceUID", ""))
    if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        values = {
            tag: struct.pack("<H", int(ds[tag].value))
            for tag in (_ROWS, _COLUMNS, _BITS, _SAMPLES)
            if tag in ds and ds[tag].value is not None
        }
        if "NumberOfFrames" in ds:
            values[_FRAMES] = str(ds.NumberOfFrames).encode()
        return _pixel_problem(values, len(ds.PixelData))
    return None


def _us(raw: bytes) -> int:
    return int(struct.unpack_from("<H", raw)[0])


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


__all__ = ["MISMATCH", "TRUNCATED", "DatasetFacts", "DatasetProblem", "check_dataset", "file_elements"]
