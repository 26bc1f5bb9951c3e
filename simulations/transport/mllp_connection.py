"""One accepted connection of the MLLP listener: the receiving side of HL7 v2.5.1 Appendix C framing.

Finds ``VT message FS CR`` blocks in what a sender writes, hands each to
:meth:`MllpServer.handle_block <simulations.transport.mllp_server.MllpServer.handle_block>` and
writes back the framed ACKs in one batch per read. Tolerant where a sender may be sloppy (bytes
between blocks are skipped, FS without CR is accepted, a block abandoned by a new VT is dropped)
and bounded where a peer may be hostile: a block over ``max_message_bytes`` or one that would take
the listener over its ``buffer_budget`` gets an AR (207) and the connection is closed, an idle
connection times out, and a peer that does not read its ACKs is not read from until it does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from simulations.transport.mllp_ack import ERR_INTERNAL
from simulations.transport.mllp_framing import FS, VT, frame, preview, stream_transport

if TYPE_CHECKING:
    from simulations.transport.mllp_server import MllpServer

logger = logging.getLogger(__name__)

_BETWEEN_BLOCKS = b"\r\n"  # the CR of an FS CR split across reads, LF from sloppy senders
_HEAD = 4096  # bytes of a refused block read for its MSH


class MllpConnection(asyncio.Protocol):
    """One accepted MLLP connection: finds blocks with ``bytes.find`` and writes the ACKs in one batch."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.buffer = bytearray()
        self.held = 0  # len(buffer) as counted in server.buffered
        self.scanned = 1  # how much of a pending block was already searched for FS
        self.last_activity = 0.0
        self.skipped = 0
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = stream_transport(transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if self.server._stopping:
            self.close()
            return
        self.server._connections.add(self)
        self.server.connections_accepted += 1
        self.loop = loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        if self.server.idle_timeout is not None:
            self.idle_timer = loop.call_later(self.server.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.idle_timer is not None and self.loop is not None:
            self.last_activity = self.loop.time()
        buffer = self.buffer
        if buffer:
            # A block continues: append in place (amortised) rather than concatenating per read,
            # so a large block trickling in is copied once, not once per chunk.
            buffer += data
            data = buffer
        end_of_data = len(data)
        pos = 0
        acks: list[bytes] = []
        max_bytes = self.server.max_message_bytes
        while pos < end_of_data:
            if data[pos] != VT:
                start = data.find(VT, pos)
                self._skip(data, pos, end_of_data if start < 0 else start)
                if start < 0:
                    pos = end_of_data
                    break
                pos = start
            end = data.find(FS, max(pos + 1, pos + self.scanned))
            if end < 0:
                if end_of_data - pos - 1 > max_bytes:
                    self._oversize(end_of_data - pos - 1, acks, data[pos + 1 : pos + 1 + _HEAD])
                    return
                self.scanned = end_of_data - pos
                break
            self.scanned = 1
            payload = data[pos + 1 : end]
            restart = payload.rfind(VT)
            if restart >= 0:
                # A sender that gave up on a block and started a new one: the new one counts.
                self._skip(payload, 0, restart + 1)
                payload = payload[restart + 1 :]
            if len(payload) > max_bytes:
                self._oversize(len(payload), acks, payload[:_HEAD])
                return
            acks.append(frame(self.server.handle_block(payload, self.peer)))
            pos = end + 1
        if pos >= end_of_data:
            buffer.clear()
        elif data is buffer:
            del buffer[:pos]
        else:
            self.buffer = bytearray(data[pos:])
        server = self.server
        held = len(self.buffer)
        if held != self.held:
            total = server.buffered + held - self.held
            if held > self.held and total > server.buffer_budget:
                self._over_budget(acks, total)  # counted only once it fits: the budget is never exceeded
                return
            server.buffered = total
            self.held = held
        if acks:
            assert self.transport is not None
            self.transport.write(acks[0] if len(acks) == 1 else b"".join(acks))

    def _skip(self, data: bytes | bytearray, start: int, end: int) -> None:
        junk = data[start:end]
        if not junk.strip(_BETWEEN_BLOCKS):
            return
        if not self.skipped:
            logger.warning("MLLP peer %s sent bytes outside a block, skipped: %r", self.peer, preview(junk))
        self.skipped += len(junk)

    def _oversize(self, size: int, acks: list[bytes], head: bytes | bytearray) -> None:
        limit = self.server.max_message_bytes
        logger.warning(
            "MLLP peer %s sent a block of more than %d bytes (%d so far); closing its connection",
            self.peer,
            limit,
            size,
        )
        # The complete messages before it still get their ACKs, then this one its AR (207)
        acks.append(self.server.refusal(head, ERR_INTERNAL, f"the message exceeds this receiver's limit of "
                                                            f"{limit} bytes", self.peer))
        self._refuse(acks)

    def _over_budget(self, acks: list[bytes], total: int) -> None:
        server = self.server
        logger.warning(
            "MLLP partial messages would take %d bytes, over the listener's budget of %d; refusing %s's (%d bytes)",
            total, server.buffer_budget, self.peer, len(self.buffer),
        )
        start = self.buffer.find(VT)
        head = self.buffer[start + 1 : start + 1 + _HEAD] if start >= 0 else self.buffer[:_HEAD]
        acks.append(server.refusal(head, ERR_INTERNAL, "the receiver has no buffer space left for this message; "
                                                       "send it again later", self.peer))
        self._refuse(acks)

    def _refuse(self, acks: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(acks))
        self._release()
        self.close()

    def _release(self) -> None:
        """Drop the partial block and give its bytes back to the listener's budget."""
        self.buffer = bytearray()  # a new object: the old one's capacity is freed, not just emptied
        self.server.buffered -= self.held
        self.held = 0

    def _check_idle(self) -> None:
        idle_timeout = self.server.idle_timeout
        if self.closed or idle_timeout is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_activity
        if idle >= idle_timeout:
            logger.info("MLLP peer %s idle for %.0f s; closing its connection", self.peer, idle)
            self.close()
        else:
            self.idle_timer = loop.call_later(idle_timeout - idle, self._check_idle)

    def pause_writing(self) -> None:
        # The peer is not reading its ACKs: stop reading its messages until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self.buffer:
            logger.info("MLLP peer %s went away mid-block (%d bytes discarded)", self.peer, len(self.buffer))
        self._release()
        self.server._connections.discard(self)
