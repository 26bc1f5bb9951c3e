"""MLLP framing (HL7 v2.5.1 Appendix C, MLLP Release 2), shared by the senders and the listener.

Every message, and every acknowledgment answering it, travels as ``<VT> payload <FS><CR>``
(``0x0B ... 0x1C 0x0D``), one exchange at a time on a persistent connection. Both sides wrap with
:func:`frame`; each side reads blocks its own way on purpose: the sender's :class:`AckReader` is
strict (anything but exactly one block means the peer is not an MLLP receiver, or is out of step),
while the listener (:mod:`simulations.transport.mllp_connection`) is tolerant of sloppy senders.
"""

from __future__ import annotations

import asyncio
import socket

from simulations.transport.errors import SendError

VT = 0x0B  # start block
FS = 0x1C  # end block
CR = 0x0D  # carriage return closing the end block
LF = 0x0A
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """Wrap one encoded HL7 message in an MLLP block (HL7 v2.5.1 Appendix C, ``VT payload FS CR``)."""
    return START_BLOCK + payload + END_BLOCK


def preview(data: bytes | bytearray | str, limit: int = 60) -> str:
    """A short printable excerpt of what a peer sent, for error messages and log lines."""
    text = data if isinstance(data, str) else data.decode("latin-1")
    excerpt = text[:limit].encode("unicode_escape").decode("ascii")
    return excerpt + ("..." if len(text) > limit else "")


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle on an MLLP connection, either side.

    MLLP is request/response with small frames: Nagle plus delayed ACKs costs ~40 ms per exchange.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def stream_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """The transport an asyncio MLLP protocol was given (either side), Nagle off on its socket."""
    assert isinstance(transport, asyncio.Transport)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        set_nodelay(sock)
    return transport


class AckReader:
    """The sender's reader: accumulates bytes until one complete ``VT ... FS CR`` block; strict about
    everything else.

    Only line ends around the block are forgiven (some receivers send ``FS CR LF``). Strict because
    on the sending side anything else means the port is not an MLLP receiver (an HTTP server
    answering, a DICOM SCP) or it is out of step with us; saying so beats guessing.
    """

    __slots__ = ("buffer", "max_bytes", "peer", "_scanned")

    def __init__(self, *, max_bytes: int, peer: str) -> None:
        self.buffer = bytearray()
        self.max_bytes = max_bytes
        self.peer = peer
        self._scanned = 1  # where the next FS search starts, so a trickled ACK is scanned once

    def feed(self, data: bytes) -> bytes | None:
        """Add ``data``; return the payload once a whole block arrived, else None."""
        buffer = self.buffer
        buffer += data
        if buffer[0] in (CR, LF):
            # Tolerate line ends left over from a sloppy peer's previous "FS CR LF".
            del buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
            if not buffer:
                return None
        if buffer[0] != VT:
            raise SendError(f"{self.peer} answered {preview(bytes(buffer))!r}, which is not an MLLP block (no VT)")
        end = buffer.find(FS, self._scanned)
        if end < 0:
            if len(buffer) - 1 > self.max_bytes:
                raise SendError(f"{self.peer} sent an ACK block larger than {self.max_bytes} bytes without FS")
            self._scanned = len(buffer)
            return None
        if end + 1 == len(buffer):
            self._scanned = end
            return None  # FS seen, its CR still on the way
        if buffer[end + 1] != CR:
            raise SendError(f"{self.peer} ended an MLLP block with FS not followed by CR")
        payload = bytes(buffer[1:end])
        if START_BLOCK in payload:
            raise SendError(f"{self.peer} sent a second VT inside one MLLP block: {preview(payload)!r}")
        if buffer[end + 2 :].strip(b"\r\n"):
            # More than one answer to one message: the connection is out of step. Report it rather
            # than let the extra block be taken as the answer to the next message.
            raise SendError(f"{self.peer} sent data after the ACK block: {preview(bytes(buffer[end + 2 :]))!r}")
        return payload
