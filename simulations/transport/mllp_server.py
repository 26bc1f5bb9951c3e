"""HL7 v2 MLLP listener (receiving side): asyncio server that acknowledges and records every message.

Framing is HL7 v2.5.1 Appendix C (``VT message FS CR``); every block received is answered with an
original-mode acknowledgment (chapter 2.9.2): ``AA`` when the MSH can be read and accepted, ``AE``
with an ERR segment (2.15.5) when it cannot be read, ``AR`` when it fails the acceptance checks of
2.9.2.2 — MSH-12 version not supported (ERR-3 203, table 0357), MSH-11 processing ID not
supported (202), MSH-9 message type (200) or trigger event (201) not supported — or when the
receiver cannot take it at all (207: a block over the size limit, or the listener's buffer
budget exhausted), in which case the AR comes just before that connection is closed. The ACK's
MSH swaps the sender's and receiver's application and facility, carries ``ACK^<trigger>^ACK`` in
MSH-9 and the incoming MSH-11/MSH-12 (v2.5.1 and P when those were refused), and MSA-2 echoes the
incoming MSH-10.

The hot path reads only the MSH (:func:`~simulations.transport.mllp_ack.parse_msh`) and builds the
ACK with string formatting (:class:`~simulations.transport.mllp_ack.AckBuilder`): a receiver that
ran a full HL7 parse per message would be the bottleneck of every simulation run. Each connection
(:mod:`simulations.transport.mllp_connection`) is tolerant where a sender may be sloppy (bytes
between blocks are skipped, FS without CR is accepted) and bounded where a peer may be hostile
(oversize blocks close that one connection, idle connections time out, a slow reader pauses reading
until it drains its ACKs, and the partial blocks of all connections together never hold more than
``buffer_budget`` bytes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from simulations.transport.mllp_ack import (
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD_MISSING,
    ERR_SEGMENT_SEQUENCE,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_MESSAGE_TYPE,
    ERR_UNSUPPORTED_PROCESSING_ID,
    ERR_UNSUPPORTED_VERSION,
    AckBuilder,
    Msh,
    parse_msh,
    salvage_control_id,
)
from simulations.transport.mllp_connection import MllpConnection
from simulations.transport.mllp_framing import DEFAULT_MAX_MESSAGE_BYTES, frame

logger = logging.getLogger(__name__)

# HL7 table 0104 (version ID): every published v2 version; the listener reads only the MSH.
HL7_VERSIONS = frozenset({"2.0", "2.0D", "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7",
                          "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9"})
# HL7 table 0103 (processing ID): debugging, production, training.
PROCESSING_IDS = frozenset({"D", "P", "T"})
# HL7 v2.5.1 table 0076 (message type). Z types are site-defined: not supported unless configured.
MESSAGE_TYPES = frozenset(
    "ACK ADR ADT BAR BPS BRP BRT BTS CRM CSU DFT DOC DSR EAC EAN EAR ERP ESR ESU INR INU LSR LSU MDM MFD "
    "MFK MFN MFQ MFR NMD NMQ NMR OMB OMD OMG OMI OML OMN OMP OMS ORB ORD ORF ORG ORI ORL ORM ORN ORP ORR "
    "ORS ORU OSQ OSR OUL PEX PGL PIN PMU PPG PPP PPR PPT PPV PRR PTR QBP QCK QCN QRY QSB QSX QVR RAR RAS "
    "RCI RCL RDE RDR RDS RDY REF RER RGR RGV ROC ROR RPA RPI RPL RPR RQA RQC RQI RQP RRA RRD RRE RRG RRI "
    "RSP RTB SCN SDN SDR SIU SLN SLR SMD SQM SQR SRM SRR SSR SSU STC STI SUR TBR TCR TCU UDM VQQ VXQ VXR "
    "VXU VXX".split()
)
DEFAULT_BUFFER_BUDGET = 64 * 1024 * 1024
_EVENT = re.compile(r"[A-Z][A-Z0-9]{2}")  # the shape of HL7 table 0003 trigger events

# MSH-18 character set names (HL7 table 0211) a sender may declare, as Python codec names.
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the listener received, with what it answered (``ack_code`` AA, AE or AR)."""

    raw: str
    peer: str
    received_at: datetime
    control_id: str
    message_type: str
    ack_code: str
    error: str = ""


class MllpServer:
    """asyncio MLLP listener (HL7 v2.5.1 Appendix C framing, chapter 2.9 original-mode ACKs).

    ``on_message`` runs on the listener's event loop for every message, after the ACK is queued;
    it must not block, and its exceptions are logged without affecting the connection. The last
    ``history`` messages are kept for :attr:`messages`. With ``ssl_context`` (a server context,
    e.g. :func:`simulations.transport.tls.server_context`) every connection is MLLP inside TLS;
    a client whose handshake does not complete within ``handshake_timeout`` seconds is dropped.

    ``versions``, ``processing_ids`` and ``message_types`` are what it accepts (MSH-12, MSH-11.1,
    MSH-9.1; defaults: HL7 tables 0104, 0103 and 0076); a trigger event (MSH-9.2) must look like one
    of table 0003 (``A04``, ``O01``…) and not be a site-defined ``Z`` event unless its type is one of
    ``message_types`` starting with Z. ``buffer_budget`` bounds the bytes held for partial blocks over
    all connections: the block that would exceed it gets an AR and its connection is closed.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float | None = 300.0,
        history: int = 1000,
        encoding: str = "utf-8",
        application: str = "YEETER",
        facility: str = "YEETER",
        backlog: int = 128,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
        versions: frozenset[str] | set[str] = HL7_VERSIONS,
        processing_ids: frozenset[str] | set[str] = PROCESSING_IDS,
        message_types: frozenset[str] | set[str] = MESSAGE_TYPES,
        buffer_budget: int = DEFAULT_BUFFER_BUDGET,
    ) -> None:
        self.host = host
        self.versions = frozenset(versions)
        self.processing_ids = frozenset(processing_ids)
        self.message_types = frozenset(message_types)
        self.buffer_budget = buffer_budget
        self.buffered = 0  # bytes of partial blocks held by all connections (the event loop's thread only)
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self._port = port
        self.on_message = on_message
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.encoding = encoding
        self.application = application
        self.facility = facility
        self.backlog = backlog
        self.received_count = 0
        self.connections_accepted = 0
        self._messages: collections.deque[ReceivedMessage] = collections.deque(maxlen=history)
        self._server: asyncio.Server | None = None
        self._connections: set[MllpConnection] = set()
        self._stopping = False
        self._acks = AckBuilder(application=application, facility=facility, versions=self.versions,
                                processing_ids=self.processing_ids)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one after ``start`` when constructed with port 0)."""
        return self._port

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the stored messages, oldest first (safe to call from any thread)."""
        return list(self._messages)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._stopping = False
        if self.ssl_context is None:
            self._server = await loop.create_server(
                lambda: MllpConnection(self), self.host, self._port, backlog=self.backlog, reuse_address=True
            )
        else:
            self._server = await loop.create_server(
                lambda: MllpConnection(self),
                self.host,
                self._port,
                backlog=self.backlog,
                reuse_address=True,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("MLLP%s listener on %s:%d", "/TLS" if self.ssl_context else "", self.host, self._port)

    async def stop(self) -> None:
        """Stop accepting, close every open connection and wait until the server is closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        # Stop accepting first, then let sockets accepted a moment ago become transports before
        # closing the server: CPython 3.12's Server._attach asserts the server is still open, so a
        # socket accepted just before close() would otherwise be dropped unclosed, its client left
        # hanging. Those late connections see _stopping in connection_made and close themselves.
        loop = asyncio.get_running_loop()
        for sock in server.sockets:
            try:
                loop.remove_reader(sock.fileno())
            except NotImplementedError:
                break  # proactor loops accept differently; close() below is all they need
        for _ in range(4):
            await asyncio.sleep(0)
        server.close()
        for connection in list(self._connections):
            connection.close()
        try:
            async with asyncio.timeout(5.0):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("MLLP listener on %s:%d: connections still open 5 s after stop", self.host, self._port)
        logger.info("MLLP listener on %s:%d stopped", self.host, self._port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start_in_thread(self, *, timeout: float = 10.0) -> MllpServerThread:
        """Run this listener on its own event loop in a daemon thread (for ``serve``/``runsim``).

        ``on_message`` then runs in that thread; ``messages`` and ``stop()`` work from any thread.
        """
        handle = MllpServerThread(self)
        handle.start(timeout=timeout)
        return handle

    def handle_block(self, payload: bytes | bytearray, peer: str) -> bytes:
        """Acknowledge one received block (without framing) and record it; returns the ACK bytes.

        HL7 v2.5.1 2.9.2 original mode: AA echoing MSH-10 in MSA-2, or AE with ERR-3 (table 0357),
        ERR-4 severity ``E`` and ERR-8 text when the message cannot be read.
        """
        encoding = self.encoding
        try:
            text = payload.decode(encoding)
        except UnicodeDecodeError:
            text, encoding = self._decode_declared(payload)
        error: tuple[str, str] | None = None
        detail = ""
        try:
            msh = parse_msh(text)
        except ValueError as exc:
            msh = None
            error = ERR_SEGMENT_SEQUENCE if not text.startswith("MSH") else ERR_DATA_TYPE
            detail = str(exc)
        else:
            if encoding != self.encoding and not self._charset_declared(msh, encoding):
                error, detail = ERR_DATA_TYPE, f"the message is not valid {self.encoding} and MSH-18 names no charset"
            elif not msh.message_type or not msh.control_id:
                missing = "MSH-9 message type" if not msh.message_type else "MSH-10 message control id"
                error, detail = ERR_REQUIRED_FIELD_MISSING, f"{missing} is empty"
        code = "AE"
        if error is None and msh is not None:
            error, detail = self._unsupported(msh)
            code = "AR"
        if error is None and msh is not None:
            ack = self._acks.accept(msh)
            code, control_id, message_type = "AA", msh.control_id, msh.message_type
        else:
            control_id = msh.control_id if msh is not None else salvage_control_id(text)
            message_type = msh.message_type if msh is not None else ""
            ack = self._acks.refuse(msh, control_id, error or ERR_DATA_TYPE, detail, code=code)
            logger.warning("MLLP message from %s answered %s: %s", peer, code, detail)
        received = ReceivedMessage(
            raw=text,
            peer=peer,
            received_at=datetime.now(UTC),
            control_id=control_id,
            message_type=message_type,
            ack_code=code,
            error=detail,
        )
        self._messages.append(received)
        self.received_count += 1
        if self.on_message is not None:
            try:
                self.on_message(received)
            except Exception:  # a faulty callback must not cost the sender its ACK or its connection
                logger.exception("MLLP on_message callback failed for message %s", control_id)
        return ack.encode(encoding, errors="replace")

    def _unsupported(self, msh: Msh) -> tuple[tuple[str, str] | None, str]:
        """HL7 v2.5.1 2.9.2.2 acceptance: MSH-12, MSH-11 and MSH-9 must be ones we support (else AR)."""
        comp = msh.component_separator
        version = msh.version.split(comp, 1)[0]
        if version and version not in self.versions:
            return ERR_UNSUPPORTED_VERSION, f"MSH-12 version {version!r} is not supported"
        processing = msh.processing_id.split(comp, 1)[0]
        if processing and processing not in self.processing_ids:
            return ERR_UNSUPPORTED_PROCESSING_ID, f"MSH-11 processing ID {processing!r} is not supported (D, P or T)"
        parts = msh.message_type.split(comp)
        kind = parts[0]
        if kind not in self.message_types:
            return ERR_UNSUPPORTED_MESSAGE_TYPE, f"MSH-9 message type {kind!r} is not supported"
        event = parts[1] if len(parts) > 1 else ""
        if event and (not _EVENT.fullmatch(event) or (event[0] == "Z" and kind[0] != "Z")):
            return ERR_UNSUPPORTED_EVENT, f"MSH-9 trigger event {event!r} is not supported for {kind}"
        return None, ""

    def refusal(self, head: bytes | bytearray, error: tuple[str, str], detail: str, peer: str) -> bytes:
        """The AR for a block we will not take at all (too big, no buffer left), built from its first
        bytes; recorded like any other answer."""
        text = bytes(head).decode(self.encoding, errors="replace")
        try:
            msh: Msh | None = parse_msh(text)
        except ValueError:
            msh = None
        control_id = msh.control_id if msh is not None else salvage_control_id(text)
        ack = self._acks.refuse(msh, control_id, error, detail, code="AR")
        logger.warning("MLLP block from %s answered AR: %s", peer, detail)
        self._messages.append(ReceivedMessage(
            raw=text[:1000], peer=peer, received_at=datetime.now(UTC), control_id=control_id,
            message_type=msh.message_type if msh is not None else "", ack_code="AR", error=detail,
        ))
        return frame(ack.encode(self.encoding, errors="replace"))

    def _decode_declared(self, payload: bytes | bytearray) -> tuple[str, str]:
        """Decode with the MSH-18 charset when the sender declared one; else latin-1 (never fails)."""
        latin = payload.decode("latin-1")
        try:
            declared = _CHARSETS.get(parse_msh(latin).character_set.upper())
        except ValueError:
            declared = None
        if declared is not None:
            try:
                return payload.decode(declared), declared
            except UnicodeDecodeError:
                pass
        return latin, "latin-1"

    @staticmethod
    def _charset_declared(msh: Msh, encoding: str) -> bool:
        return _CHARSETS.get(msh.character_set.upper()) == encoding


class MllpServerThread:
    """A listener running on its own event loop in a daemon thread; ``stop()`` from any thread."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.server.messages

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the thread and wait until the listener is bound (re-raising a bind failure)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"MLLP listener did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def _run(self) -> None:
        # asyncio.run cancels whatever is still pending at the end (an accept in flight) so its
        # socket is closed rather than leaked with the loop.
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            self._error = exc
            return
        finally:
            self._ready.set()
        await self._stop_requested.wait()
        await self.server.stop()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the listener, close its connections and join the thread (idempotent)."""
        if self._thread.is_alive() and self._loop is not None and self._stop_requested is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_requested.set)
            except RuntimeError:
                pass  # the loop closed between the check and the call: already stopped
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
