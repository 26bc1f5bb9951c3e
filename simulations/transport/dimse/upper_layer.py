"""The DICOM Upper Layer both of our own DIMSE peers speak: the C-STORE SCU (:mod:`.store`) and the
Storage SCP (:mod:`.storage_scp`).

Both drive their associations on a blocking socket instead of pynetdicom's DUL reactor (their module
docstrings say why: speed). What they share is here, once:

* :class:`PduStream`: PDUs on a connected (plain or TLS) socket, scatter/gather sends, exact reads,
  A-ABORT (PS3.8 §9.3);
* A-ASSOCIATE: the RQ and AC PDUs with the user information both sides announce (:func:`encode_associate`:
  Maximum Length, Implementation Class UID and Version Name, PS3.7 D.3.3), the peer's Maximum Length
  (:func:`peer_max_length`), decoding an A-ASSOCIATE-RQ/AC body with pynetdicom's ``pdu`` classes
  (:func:`decode_associate`), a presentation context item (:func:`presentation_context`), the
  A-ASSOCIATE-RJ and A-RELEASE PDUs (:func:`reject_pdu`, :data:`RELEASE_RQ`, :data:`RELEASE_RP`);
* P-DATA-TF (PS3.8 §9.3.5, Annex E): :func:`dimse_buffers` frames one DIMSE message, :func:`iter_pdvs`
  walks the PDVs of a received PDU, :func:`fragment_size` fits them to the peer;
* DIMSE command sets in Implicit VR Little Endian (PS3.7 §6.3.1, Annex E): :func:`encode_command`,
  :func:`parse_command`, and data sets encoded for a context (:func:`encode_dataset`);
* the DIMSE statuses (PS3.7 Annex C, PS3.4 B.2.3) the SCP answers with and the SCU classifies.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from simulations.transport.errors import SendError

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 Annex A.2.1
# When the peer announces "unlimited" (0) we still cut the data set into PDVs of this size so that
# a multi-gigabyte instance never needs one giant iovec.
_UNLIMITED_FRAGMENT = 4 * 1024 * 1024
# TLS path: buffers below this size are joined before sendall (one TLS record holds up to 16 KiB).
_COALESCE_LIMIT = 64 * 1024

# PDU types (PS3.8 Table 9-11)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ_TYPE, RELEASE_RP_TYPE, ABORT = range(1, 8)
RELEASE_RQ = struct.pack(">BBII", RELEASE_RQ_TYPE, 0, 4, 0)  # A-RELEASE-RQ PDU (PS3.8 §9.3.6)
RELEASE_RP = struct.pack(">BBII", RELEASE_RP_TYPE, 0, 4, 0)  # A-RELEASE-RP PDU (PS3.8 §9.3.7)

# DIMSE statuses (PS3.7 Annex C; PS3.4 Table B.2-1 for storage)
SUCCESS = 0x0000
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.5.6: the SOP Instance UID is already held
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_OBJECT_INSTANCE = 0x0117  # PS3.7 C.5.9: the SOP Instance UID breaks the UID rules (PS3.5 §9)
MISSING_ATTRIBUTE = 0x0120
SOP_CLASS_NOT_SUPPORTED = 0x0122
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124
UNRECOGNIZED_OPERATION = 0x0211
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
ELEMENTS_DISCARDED = 0xB006  # Warning (PS3.4 B.2.3): the duplicate's elements were discarded

# DIMSE command elements (PS3.7 §E.1) whose value is a string; every other one here is US
_STRING_COMMAND_ELEMENTS = frozenset({0x0002, 0x0003, 0x0600, 0x0902, 0x1000, 0x1001, 0x1030})


class PduStream:
    """A connected socket speaking PDUs: scatter/gather send, exact reads, one PDU at a time.

    ``sock`` may be a TLS socket (``ssl.SSLSocket``, handshake done). Every failure becomes a
    SendError naming ``label`` (the peer); the socket is then closed.
    """

    def __init__(self, sock: socket.socket, label: str, timeout: float | None) -> None:
        self.sock: socket.socket | None = sock
        self.label = label
        self.timeout = timeout
        self.tls = isinstance(sock, ssl.SSLSocket)
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, buffers: list[bytes | memoryview]) -> None:
        """Send all ``buffers`` back to back (one ``sendmsg`` when the kernel takes them all)."""
        sock = self.sock
        if sock is None:
            raise SendError(f"association with {self.label} is closed")
        if self.tls:
            self._send_coalesced(sock, buffers)
            return
        try:
            _sendmsg_all(sock, buffers)
        except OSError as exc:
            self.close()
            raise SendError(f"connection to {self.label} lost while sending: {exc.strerror or exc}") from exc

    def send_file_message(self, context_id: int, command: bytes, file: BinaryIO, offset: int, size: int,
                          fragment: int) -> None:
        """One DIMSE message whose data set is ``size`` bytes of ``file`` from ``offset``, framed as
        :func:`dimse_buffers` frames it, the data set moved by the kernel (``sendfile``: no read into this
        process, no copy of it here). Each PDV header goes out with ``MSG_MORE``, so it shares a segment with
        its data. Plain sockets only (TLS encrypts in this process: :meth:`send`).

        A file that holds fewer bytes than announced (cut short meanwhile) leaves a PDV short on the wire, and
        so does a peer that takes nothing for ``timeout``: the connection is closed (an A-ABORT could only
        be read as the PDV's missing bytes; the peer sees the transport close, PS3.8 §9.1.4) and SendError
        says so.
        """
        sock = self.sock
        if sock is None:
            raise SendError(f"association with {self.label} is closed")
        buffers: list[bytes | memoryview] = dimse_buffers(context_id, command, None, fragment)
        try:
            for start, count, control in _data_fragments(size, fragment):
                buffers.append(_pdv_header(count, context_id, control))
                _sendmsg_all(sock, buffers, socket.MSG_MORE if count else 0)
                buffers = []
                if count and sock.sendfile(file, offset + start, count) != count:
                    self.close()
                    raise SendError(f"{getattr(file, 'name', 'the file')} was cut short while being sent to "
                                    f"{self.label}: the connection is closed")
        except TimeoutError as exc:
            self.close()
            raise SendError(f"{self.label} took nothing for {self.timeout:g} s: the connection is closed") from exc
        except OSError as exc:
            self.close()
            raise SendError(f"connection to {self.label} lost while sending: {exc.strerror or exc}") from exc

    def _send_coalesced(self, sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
        """``sendall`` for TLS sockets, which have no ``sendmsg``.

        Small buffers (PDU headers, command sets, small data sets) are joined so that they travel
        in one TLS record and one segment rather than one each; large ones (data set fragments)
        go out as they are, since joining them would only add a copy before encryption.
        """
        pending: list[bytes | memoryview] = []
        pending_size = 0
        try:
            for buffer in buffers:
                size = len(buffer)
                if size >= _COALESCE_LIMIT:
                    if pending:
                        sock.sendall(b"".join(pending))
                        pending.clear()
                        pending_size = 0
                    sock.sendall(buffer)
                    continue
                pending.append(buffer)
                pending_size += size
                if pending_size >= _COALESCE_LIMIT:
                    sock.sendall(b"".join(pending))
                    pending.clear()
                    pending_size = 0
            if pending:
                sock.sendall(b"".join(pending))
        except OSError as exc:
            self.close()
            raise SendError(f"connection to {self.label} lost while sending: {exc.strerror or exc}") from exc

    def recv_exact(self, size: int, deadline: float | None = None) -> bytearray:
        """Exactly ``size`` bytes (a fresh buffer: callers keep views into it).

        With ``deadline`` (a ``time.monotonic()`` value) the whole read must finish by then, however
        the peer trickles its bytes (the ARTIM timer of PS3.8 §9.1.5); otherwise each wait for data
        is bounded by ``timeout``.
        """
        sock = self.sock
        if sock is None:
            raise SendError(f"association with {self.label} is closed")
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        try:
            while got < size:
                if deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                n = sock.recv_into(view[got:], size - got)
                if n == 0:
                    self.close()
                    raise SendError(f"{self.label} closed the connection")
                got += n
        except TimeoutError as exc:
            if deadline is not None:  # ARTIM expiry: close the transport connection (PS3.8 §9.2 AA-2)
                self.close()
                raise SendError(f"{self.label} sent no complete A-ASSOCIATE-RQ in time (ARTIM)") from exc
            self.abort()
            raise SendError(f"{self.label} sent nothing for {self.timeout:g} s") from exc
        except OSError as exc:
            self.close()
            raise SendError(f"connection to {self.label} lost: {exc.strerror or exc}") from exc
        finally:
            if deadline is not None and self.sock is not None:
                self.sock.settimeout(self.timeout)
        return buffer

    def read_pdu(self, limit: int = 0, deadline: float | None = None) -> tuple[int, bytearray]:
        """(PDU type, PDU body without its 6-byte header).

        ``limit`` (if not 0) is the largest body we accept, normally the Maximum Length we
        announced (PS3.8 D.1): a larger PDU is a protocol error, and reading it blindly would let
        a peer make us allocate up to 4 GiB. ``deadline``: see :meth:`recv_exact`.
        """
        pdu_type, _, length = struct.unpack(">BBI", self.recv_exact(6, deadline))
        if limit and length > limit:
            self.abort(source=2, reason=6)  # service provider, invalid PDU parameter value
            raise SendError(f"{self.label} sent a {length}-byte {pdu_name(pdu_type, b'')}, over the {limit} agreed")
        return pdu_type, self.recv_exact(length, deadline) if length else bytearray()

    def abort(self, source: int = 0, reason: int = 0) -> None:
        """A-ABORT (PS3.8 §9.3.8) and close; best effort, the peer may be gone."""
        sock = self.sock
        if sock is not None:
            try:
                sock.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, source, reason))
            except OSError:
                pass  # nothing left to tell a peer that has gone
        self.close()

    def close(self) -> None:
        """Close the connection; safe to call from another thread, wakes a blocked reader."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop the TLS
                # state under a reader blocked in another thread; this only wakes it with EOF.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already disconnected
            sock.close()


def encode_command(fields: Sequence[tuple[int, int | str]]) -> bytes:
    """A DIMSE command set, group 0000 in Implicit VR Little Endian (PS3.7 §6.3.1, Annex E).

    ``fields`` are (element, value) in ascending element order; ints are US, strings are UI
    (NUL padded) or, for Error Comment, LO (space padded). The group length is prepended.
    """
    parts = []
    for element, value in fields:
        if isinstance(value, str):
            raw = value.encode("ascii", "replace")
            if len(raw) % 2:
                raw += b" " if element == 0x0902 else b"\x00"
            parts.append(struct.pack("<HHI", 0x0000, element, len(raw)) + raw)
        else:
            parts.append(struct.pack("<HHIH", 0x0000, element, 2, value))
    body = b"".join(parts)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def parse_command(data: bytes | bytearray) -> dict[int, int | str]:
    """The group 0000 elements of a command set (Implicit VR LE): element -> int (US) or str."""
    fields: dict[int, int | str] = {}
    offset = 0
    while offset + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, offset)
        value = bytes(data[offset + 8 : offset + 8 + length])
        offset += 8 + length
        if group != 0x0000 or element == 0x0000:
            continue
        if element in _STRING_COMMAND_ELEMENTS:
            fields[element] = value.rstrip(b"\x00 ").decode("ascii", "replace")
        elif length == 2:
            fields[element] = struct.unpack("<H", value)[0]
        elif length == 4:
            fields[element] = struct.unpack("<I", value)[0]
    return fields


def _sendmsg_all(sock: socket.socket, buffers: list[bytes | memoryview], flags: int = 0) -> None:
    """``sendmsg`` until every buffer is sent: it takes at most IOV_MAX (1024) buffers and may send part."""
    first = 0
    while first < len(buffers):
        sent = sock.sendmsg(buffers[first : first + 1000], (), flags)
        while sent:
            head = buffers[first]
            if sent >= len(head):
                sent -= len(head)
                first += 1
            else:
                buffers[first] = memoryview(head)[sent:]
                sent = 0


def dimse_buffers(
    context_id: int, command: bytes, dataset: bytes | bytearray | memoryview | None, fragment: int
) -> list[bytes | memoryview]:
    """P-DATA-TF PDUs carrying one DIMSE message (PS3.8 §9.3.5, Annex E.2) as send buffers.

    One PDV per PDU; the data set is cut into ``fragment``-byte PDVs that are views into
    ``dataset``, so nothing is copied before the kernel does it.
    """
    buffers: list[bytes | memoryview] = [_pdv_header(len(command), context_id, 0x03), command]
    if dataset is None:
        return buffers
    view = memoryview(dataset)
    for start, count, control in _data_fragments(len(view), fragment):
        buffers += (_pdv_header(count, context_id, control), view[start : start + count])
    return buffers


def _pdv_header(length: int, context_id: int, control: int) -> bytes:
    """The P-DATA-TF PDU header and PDV item header of one PDV of ``length`` value bytes (PS3.8 §9.3.5,
    Annex E.2): PDU type 04, PDU length, item length, presentation context, message control header."""
    return struct.pack(">BBIIBB", 0x04, 0, length + 6, length + 2, context_id, control)


def _data_fragments(total: int, fragment: int) -> Iterator[tuple[int, int, int]]:
    """(start, length, message control header) of each PDV of a ``total``-byte data set cut into
    ``fragment``-byte pieces: the last flagged 0x02; an empty data set is one empty last PDV."""
    start = 0
    while True:
        count = min(fragment, total - start)
        last = start + count >= total
        yield start, count, 0x02 if last else 0x00
        if last:
            return
        start += count


def fragment_size(peer_max_pdu: int) -> int:
    """Largest PDV value for a peer's Maximum Length (PS3.8 D.1): PDV = 4 length + 2 header + data."""
    return peer_max_pdu - 6 if peer_max_pdu > 6 else _UNLIMITED_FRAGMENT


def pdu_name(pdu_type: int, body: bytes | bytearray) -> str:
    """A PDU's name for messages, with the A-ABORT source and reason."""
    if pdu_type == 0x07 and len(body) >= 4:
        return f"A-ABORT (source {body[2]}, reason {body[3]})"
    names = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ", 0x04: "P-DATA-TF",
             0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP"}
    return names.get(pdu_type, f"PDU type 0x{pdu_type:02X}")



def iter_pdvs(body: bytes | bytearray) -> Iterator[tuple[int, int, memoryview]]:
    """(presentation context ID, message control header, value) of each PDV item of a P-DATA-TF PDU body
    (PS3.8 §9.3.5, Annex E.2); the values are views into ``body``."""
    view = memoryview(body)
    offset = 0
    while offset + 6 <= len(body):
        (length,) = struct.unpack_from(">I", body, offset)
        yield body[offset + 4], body[offset + 5], view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` encoded in the uncompressed little endian ``transfer_syntax`` of a presentation context (PS3.5 §10)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = UID(transfer_syntax).is_implicit_VR
    write_dataset(buffer, ds)
    return buffer.getvalue()


def _user_information(max_pdu: int) -> list[Any]:
    """The user information items we announce in A-ASSOCIATE-RQ and -AC (PS3.7 D.3.3): Maximum Length
    (PS3.8 D.1) and our implementation's class UID and version name (pynetdicom's, whose PDUs we use)."""
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    return [max_length, class_uid, version]


def encode_associate(*, calling_ae_title: str, called_ae_title: str, max_pdu: int,
                     proposed: Sequence[PresentationContext] = (),
                     results: Sequence[PresentationContext] | None = None) -> bytes:
    """An A-ASSOCIATE-RQ proposing ``proposed`` (PS3.8 §9.3.2) or, given ``results`` (one per proposed
    context, accepted or not), the A-ASSOCIATE-AC answering one (§9.3.3); with our user information."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling_ae_title
    primitive.called_ae_title = called_ae_title
    pdu: A_ASSOCIATE_RQ | A_ASSOCIATE_AC
    if results is None:
        primitive.presentation_context_definition_list = list(proposed)
        pdu = A_ASSOCIATE_RQ()
    else:
        primitive.result = 0x00
        primitive.presentation_context_definition_results_list = list(results)
        pdu = A_ASSOCIATE_AC()
    primitive.user_information = _user_information(max_pdu)
    pdu.from_primitive(primitive)
    return pdu.encode()


def peer_max_length(primitive: A_ASSOCIATE) -> int:
    """The Maximum Length the peer announced in its A-ASSOCIATE (0: unlimited or not said)."""
    announced = next(
        (i.maximum_length_received for i in primitive.user_information if isinstance(i, MaximumLengthNotification)),
        0,
    )
    return announced or 0


def decode_associate(pdu_type: int, body: bytes | bytearray) -> A_ASSOCIATE:
    """The A-ASSOCIATE primitive of an A-ASSOCIATE-RQ or -AC PDU body as :meth:`PduStream.read_pdu` returns it."""
    pdu = A_ASSOCIATE_RQ() if pdu_type == ASSOCIATE_RQ else A_ASSOCIATE_AC()
    pdu.decode(bytes([pdu_type, 0x00]) + struct.pack(">I", len(body)) + bytes(body))
    return pdu.to_primitive()


def presentation_context(context_id: int, abstract_syntax: str, transfer_syntaxes: Sequence[str],
                         result: int | None = None) -> PresentationContext:
    """A presentation context item (PS3.8 §9.3.2.2 proposed; §9.3.3.2 with ``result``, Table 9-18)."""
    cx = PresentationContext()
    cx.context_id = context_id
    cx.abstract_syntax = UID(abstract_syntax)
    cx.transfer_syntax = [UID(ts) for ts in transfer_syntaxes]
    if result is not None:
        cx.result = result
    return cx


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4, Table 9-21)."""
    return struct.pack(">BBIBBBB", ASSOCIATE_RJ, 0, 4, 0, result, source, reason)
