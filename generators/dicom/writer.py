"""Fast DICOM Part 10 writing: a series header encoded once as a byte template, patched per instance.

PS3.10 §7 file = 128-byte preamble, ``DICM``, the File Meta Information group (0002) in Explicit VR
Little Endian, then the data set. Every instance of a series shares all but a handful of elements
(SOP Instance UID, Instance Number, Image Position, Slice Location, Pixel Data, …), so the shared
elements are encoded once with pydicom's own element writer, split at the positions of the
per-instance elements, and each instance is the template chunks interleaved with a few hand-encoded
elements (PS3.5 §7.1.2 Explicit VR Little Endian). The result is byte-identical to what
``pydicom.dcmwrite`` writes for the same data set (``tests/generators/test_dicom_writer.py``).

A single writer thread takes finished buffers off a bounded queue so pixel computation overlaps
the file system writes (numpy and ``os.writev`` both release the GIL).
"""

from __future__ import annotations

import os
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels import get_encoder
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

IMPLEMENTATION_CLASS_UID = "2.25.124416074104589615423355364817114259023"
IMPLEMENTATION_VERSION_NAME = "YEETER_1"
PIXEL_DATA = 0x7FE00010
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"

# PS3.5 §7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_NUMERIC = {"US": "<H", "UL": "<I", "SS": "<h", "SL": "<i", "FL": "<f", "FD": "<d"}

SUPPORTED_TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, RLELossless, JPEGLSLossless)


def encode_element(tag: int, vr: str, value: Any) -> bytes:
    """Encode one element in Explicit VR Little Endian (PS3.5 §7.1.2), padding as PS3.5 §6.2 requires.

    ``value`` is ``str`` for string VRs (multiple values already joined with ``\\``), a number or a
    sequence of numbers for binary VRs, or ``bytes``.
    """
    if isinstance(value, bytes):
        raw = value
    elif vr in _NUMERIC:
        values = value if isinstance(value, (list, tuple)) else [value]
        raw = struct.pack("<" + _NUMERIC[vr][1] * len(values), *values)
    else:
        raw = str(value).encode("ascii")
    if len(raw) % 2:
        raw += b"\x00" if vr in ("UI", "OB") else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(raw)) + raw
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(raw)) + raw


def pixel_header(vr: str, length: int) -> bytes:
    """The (7FE0,0010) element header for ``length`` value bytes (0xFFFFFFFF = encapsulated, undefined)."""
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr.encode(), 0, length)


def file_meta_bytes(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, ``DICM`` prefix and File Meta Information group (PS3.10 §7.1) for one instance."""
    body = b"".join((
        encode_element(0x00020001, "OB", b"\x00\x01"),
        encode_element(0x00020002, "UI", sop_class_uid),
        encode_element(0x00020003, "UI", sop_instance_uid),
        encode_element(0x00020010, "UI", transfer_syntax_uid),
        encode_element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        encode_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME),
    ))
    return b"\x00" * 128 + b"DICM" + encode_element(0x00020000, "UL", len(body)) + body


class Encoded(bytes):
    """A complete, already encoded element (e.g. a per-instance sequence) to splice in as is."""


def encode_dataset_element(dataset: Dataset, tag: int) -> Encoded:
    """Encode ``dataset[tag]`` (any VR, sequences included) with pydicom's element writer."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, dataset[tag], dataset.get("SpecificCharacterSet") or None)
    return Encoded(fp.getvalue())


class SeriesTemplate:
    """A series data set pre-encoded around its per-instance elements.

    ``dataset`` holds every series-level element (no Pixel Data); ``dynamic`` maps each per-instance
    tag to its VR. :meth:`header` returns everything before the Pixel Data value for one instance.
    """

    def __init__(self, dataset: Dataset, dynamic: dict[int, str]) -> None:
        self.dynamic = dict(sorted(dynamic.items()))
        self._dynamic_tags = [t for t in self.dynamic if t != PIXEL_DATA]
        encodings = dataset.get("SpecificCharacterSet") or None
        chunks: list[bytearray] = [bytearray()]
        boundaries = iter(self._dynamic_tags + [PIXEL_DATA])
        next_dynamic = next(boundaries)
        for elem in dataset:  # a Dataset iterates in ascending tag order
            if elem.tag in self.dynamic:
                raise ValueError(f"per-instance element {elem.tag} must not be in the series template")
            while elem.tag > next_dynamic:
                chunks.append(bytearray())
                next_dynamic = next(boundaries, 0xFFFFFFFF)
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_data_element(fp, elem, encodings)
            chunks[-1] += fp.getvalue()
        if len(dataset) and int(list(dataset.keys())[-1]) > PIXEL_DATA:
            raise ValueError("elements after Pixel Data are not supported in a template")
        while len(chunks) < len(self._dynamic_tags) + 1:
            chunks.append(bytearray())
        self._chunks = [bytes(c) for c in chunks]

    def header(self, values: dict[int, Any]) -> bytes:
        """Data set bytes up to (not including) Pixel Data, with ``values`` for the per-instance tags."""
        parts = [self._chunks[0]]
        for i, tag in enumerate(self._dynamic_tags):
            value = values.get(tag)
            if isinstance(value, Encoded):
                parts.append(value)
            elif value is not None:
                parts.append(encode_element(tag, self.dynamic[tag], value))
            parts.append(self._chunks[i + 1])
        return b"".join(parts)


def encode_frame(arr: np.ndarray, transfer_syntax_uid: str, *, bits_stored: int, signed: bool) -> bytes:
    """Compress one frame losslessly (PS3.5 Annex G RLE, Annex A.4.3 JPEG-LS) with pydicom's encoders."""
    encoder = get_encoder(transfer_syntax_uid)
    arr = np.ascontiguousarray(arr)
    if not signed and arr.dtype.kind == "i":
        # CT/MR stacks compute in int16 but hold only non-negative stored values (Pixel Representation 0)
        arr = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    return encoder.encode(
        arr,
        rows=arr.shape[0], columns=arr.shape[1], samples_per_pixel=1, number_of_frames=1,
        bits_allocated=arr.dtype.itemsize * 8, bits_stored=bits_stored,
        pixel_representation=int(signed), photometric_interpretation="MONOCHROME2",
    )


def pixel_element(arr: np.ndarray, transfer_syntax_uid: str, *, bits_stored: int, signed: bool
                  ) -> list[bytes | memoryview]:
    """The Pixel Data element as buffers: native (OW/OB, no copy of the array) or encapsulated (PS3.5 A.4).

    ``arr`` is one frame (rows, columns) or the frames of a multi-frame instance (frames, rows, columns).
    """
    if transfer_syntax_uid == ExplicitVRLittleEndian:
        view = memoryview(np.ascontiguousarray(arr)).cast("B")
        vr = "OW" if arr.dtype.itemsize > 1 else "OB"
        if len(view) % 2:
            return [pixel_header(vr, len(view) + 1), view, b"\x00"]
        return [pixel_header(vr, len(view)), view]
    # a multi-frame instance (frames, rows, columns) is one fragment per frame (PS3.5 A.4)
    frames = [encode_frame(f, transfer_syntax_uid, bits_stored=bits_stored, signed=signed)
              for f in (arr if arr.ndim == 3 else [arr])]
    # encapsulate() gives the (empty) Basic Offset Table item and the fragment items; the
    # Sequence Delimitation Item (FFFE,E0DD) closing the undefined-length element is ours to add.
    return [pixel_header("OB", 0xFFFFFFFF), encapsulate(frames, has_bot=False), SEQUENCE_DELIMITER]


class AsyncFileWriter:
    """Writes lists of buffers to files on one background thread; completions come back in order.

    ``submit`` blocks when ``depth`` files are pending (bounded memory); ``done()`` yields the
    callbacks' results for files already on disk; ``close()`` waits for the rest. An error in the
    thread is re-raised in the caller.
    """

    def __init__(self, depth: int = 4) -> None:
        self._todo: queue.Queue[tuple[Path, Sequence[bytes | memoryview], Callable[[int], Any]] | None] = (
            queue.Queue(maxsize=depth))
        self._done: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dicom-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            path, buffers, then = job
            if self._error is not None:
                continue
            try:
                # Atomically: a reader (the C-STORE sender, a PACS watching the folder) never sees half a
                # file, and a study written again (a story redone) replaces the old files whole.
                partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    size = _writev_all(fd, buffers)
                finally:
                    os.close(fd)
                os.replace(partial, path)
                self._done.put(then(size))
            except BaseException as exc:  # handed to the producer thread, which re-raises it
                self._error = exc

    def submit(self, path: Path, buffers: Sequence[bytes | memoryview], then: Callable[[int], Any]) -> None:
        self._raise()
        self._todo.put((path, buffers, then))

    def done(self) -> Iterable[Any]:
        self._raise()
        while True:
            try:
                yield self._done.get_nowait()
            except queue.Empty:
                return

    def close(self) -> list[Any]:
        """Wait for pending files and return the remaining completions."""
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()
        self._raise()
        return list(self.done())

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _writev_all(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
    total = sum(len(b) for b in buffers)
    written = os.writev(fd, buffers)
    if written < total:  # a short write (large files, signals): finish with plain writes
        data = memoryview(b"".join(bytes(b) for b in buffers))[written:]
        while data:
            data = data[os.write(fd, data):]
    return total
