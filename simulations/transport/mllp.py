"""HL7 v2 over MLLP: framing, ACK checking and the sending side (sync and asyncio clients).

Framing follows the Minimal Lower Layer Protocol of HL7 v2.5.1 Appendix C (MLLP Release 2):
every message travels as ``<VT> message <FS><CR>`` (``0x0B ... 0x1C 0x0D``) and the receiver answers
each one with an acknowledgment message framed the same way, one exchange at a time on a persistent
connection. Acknowledgment semantics are HL7 v2.5.1 chapter 2 section 2.9 (original mode) and the
MSA segment (2.15.8, table 0008): ``AA``/``CA`` accept, ``AE``/``CE`` error, ``AR``/``CR`` reject.

Every failure reaches the caller as :class:`~simulations.transport.errors.SendError` (or its
subclass :class:`AckError` when the peer answered with a negative ACK), never as a hang: connects and
reads have timeouts, frames are bounded, and anything a peer sends that is not an MLLP frame holding
an ACK for the message just sent is reported with what was received.

Both clients and :func:`mllp_ping` take an optional ``ssl_context`` for MLLP inside TLS (built by
:mod:`simulations.transport.tls`, which also says which handshake failures are permanent).

The listener (receiving side) lives in :mod:`simulations.transport.mllp_server`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple, Self

import hl7

from simulations.transport.errors import SendError
from simulations.transport.tls import describe_handshake_failure

logger = logging.getLogger(__name__)

VT = 0x0B  # start block
FS = 0x1C  # end block
CR = 0x0D  # carriage return closing the end block
LF = 0x0A
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# HL7 table 0008 acknowledgment codes: original mode (A*) and enhanced mode commit (C*).
ACCEPT_CODES = frozenset({"AA", "CA"})
ERROR_CODES = frozenset({"AE", "CE"})
REJECT_CODES = frozenset({"AR", "CR"})
ACK_CODES = ACCEPT_CODES | ERROR_CODES | REJECT_CODES


def frame(payload: bytes) -> bytes:
    """Wrap one encoded HL7 message in an MLLP block (HL7 v2.5.1 Appendix C, ``VT payload FS CR``)."""
    return START_BLOCK + payload + END_BLOCK


def preview(data: bytes | str, limit: int = 60) -> str:
    """A short printable excerpt of what a peer sent, for error messages and log lines."""
    text = data if isinstance(data, str) else data.decode("latin-1")
    excerpt = text[:limit].encode("unicode_escape").decode("ascii")
    return excerpt + ("..." if len(text) > limit else "")


class Msh(NamedTuple):
    """The MSH fields the transport needs (HL7 v2.5.1 section 2.14.9), as raw (still escaped) text.

    Field numbers follow the standard: MSH-1 is the field separator itself, so for a segment split
    on that separator, MSH-n is element ``n - 1``. A named tuple because the listener builds one
    per message and tuple construction is several times cheaper than a frozen dataclass's.
    """

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    character_set: str

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0]

    @property
    def trigger_event(self) -> str:
        """MSH-9.2 (``O01`` of ``ORM^O01^ORM_O01``), empty when the sender gave none."""
        parts = self.message_type.split(self.component_separator)
        return parts[1] if len(parts) > 1 else ""


def parse_msh(text: str) -> Msh:
    """Read the MSH segment at the start of ``text`` (HL7 v2.5.1 section 2.14.9).

    Deliberately not a full parser: the listener's hot path needs only the header, and splitting
    one segment on its own field separator is an order of magnitude cheaper than parsing the whole
    message. Raises ``ValueError`` with a sentence when there is no usable MSH (missing segment,
    bad MSH-1/MSH-2 encoding characters).
    """
    if not text.startswith("MSH") or len(text) < 8:
        raise ValueError("the message does not start with an MSH segment")
    separator = text[3]
    end = text.find("\r")
    segment = text if end < 0 else text[:end]
    newline = segment.find("\n")  # some senders end segments with LF; the MSH ends there too
    if newline >= 0:
        segment = segment[:newline]
    fields = segment.split(separator)
    encoding = fields[1] if len(fields) > 1 else ""
    if (separator, encoding) not in _VALID_DELIMITERS:
        _check_delimiters(separator, encoding)
    if len(fields) < 18:
        fields += [""] * (18 - len(fields))
    return Msh(
        field_separator=separator,
        encoding_characters=encoding,
        sending_application=fields[2],
        sending_facility=fields[3],
        receiving_application=fields[4],
        receiving_facility=fields[5],
        message_type=fields[8],
        control_id=fields[9],
        processing_id=fields[10],
        version=fields[11],
        character_set=fields[17],
    )


# Delimiter sets already found valid: almost every sender uses "|^~\&", so the check runs once.
_VALID_DELIMITERS: set[tuple[str, str]] = {("|", "^~\\&"), ("|", "^~\\&#")}


def _check_delimiters(separator: str, encoding: str) -> None:
    """MSH-1/MSH-2 (HL7 v2.5.1 2.14.9.1-2): component, repetition, escape, subcomponent (+ truncation
    since v2.7) characters, all distinct, none alphanumeric or white space, none equal to MSH-1."""
    if separator.isalnum() or separator.isspace():
        raise ValueError(f"MSH-1 field separator {separator!r} is not a valid delimiter")
    if (
        len(encoding) not in (4, 5)
        or len(set(encoding)) != len(encoding)
        or separator in encoding
        or any(char.isalnum() or char.isspace() for char in encoding)
    ):
        raise ValueError(f"MSH-2 encoding characters {encoding!r} are not valid (expected e.g. '^~\\&')")
    if len(_VALID_DELIMITERS) < 64:
        _VALID_DELIMITERS.add((separator, encoding))


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgment received for a sent message (MSA segment, HL7 v2.5.1 section 2.15.8).

    ``text`` joins MSA-3 and the ERR segments' user messages / error codes (unescaped);
    ``latency_s`` is the round trip of the exchange that produced this ACK (send to last byte of
    the ACK), ``attempts`` how many exchanges ``send`` needed.
    """

    code: str
    control_id: str
    text: str
    raw: str
    latency_s: float
    attempts: int = 1

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPT_CODES


class AckError(SendError):
    """The peer answered with a negative acknowledgment (MSA-1 AE/AR/CE/CR); ``ack`` is what it sent.

    Always permanent for the message sent: AR/CR is a reject (HL7 v2.5.1 2.9.2, retrying the same
    message cannot help) and AE/CE is an application error in the message's content, which the
    sender has to fix before sending again. ``status`` is the MSA-1 code.
    """

    def __init__(self, message: str, *, ack: Ack) -> None:
        super().__init__(message, permanent=True, status=ack.code)
        self.ack = ack


def parse_ack(raw: str, *, expected_control_id: str, peer: str, latency_s: float = 0.0, attempts: int = 1) -> Ack:
    """Parse an ACK (HL7 v2.5.1 section 2.9, MSA 2.15.8, ERR 2.15.5) and check it answers our message.

    Raises ``SendError`` (not permanent) for an ACK without MSA, with an MSA-1 outside table 0008,
    or whose MSA-2 differs from the sent MSH-10. A negative ACK with an empty MSA-2 is accepted
    as the answer: MLLP is one exchange at a time and a receiver that could not read our MSH cannot
    echo its control id. Does not judge MSA-1; see :func:`check_ack`.
    """
    # python-hl7 only splits segments on CR; tolerate LF-terminated ACKs from sloppy peers.
    text = raw.replace("\r\n", "\r").replace("\n", "\r")
    try:
        message = hl7.parse(text)
    except Exception as exc:  # any parser failure on hostile bytes means the same thing: not an ACK
        raise SendError(f"{peer} answered with an unparsable ACK ({exc}): {preview(raw)!r}") from exc
    try:
        msa = message.segment("MSA")
    except KeyError:
        raise SendError(f"{peer} answered without an MSA segment: {preview(raw)!r}") from None

    def field(segment: hl7.Segment, number: int) -> str:
        return str(segment[number]) if len(segment) > number else ""

    code = field(msa, 1).strip().upper()
    if code not in ACK_CODES:
        raise SendError(f"{peer} answered MSA-1 {code!r}, not an acknowledgment code of HL7 table 0008")
    control_id = field(msa, 2).strip()
    if control_id != expected_control_id and (code in ACCEPT_CODES or control_id):
        raise SendError(
            f"{peer} acknowledged control id {control_id!r} (MSA-2) but the message sent had MSH-10 "
            f"{expected_control_id!r}"
        )
    notes = [message.unescape(field(msa, 3))]  # MSA-3 text message (kept for backward compatibility)
    for err in (segment for segment in message if str(segment[0]) == "ERR"):
        user_message = message.unescape(field(err, 8))  # ERR-8 user message (v2.5)
        error_code = field(err, 3)  # ERR-3 HL7 error code, CWE code^text^table
        legacy = field(err, 1)  # ERR-1 error code and location (v2.4 and older)
        notes.append(user_message or message.unescape(error_code) or message.unescape(legacy))
    return Ack(
        code=code,
        control_id=control_id,
        text="; ".join(dict.fromkeys(note for note in notes if note)),  # receivers often repeat MSA-3 in ERR-8
        raw=raw,
        latency_s=latency_s,
        attempts=attempts,
    )


def check_ack(ack: Ack, *, peer: str) -> Ack:
    """Return ``ack`` when it accepts the message, else raise :class:`AckError` (always permanent)."""
    if ack.code in ACCEPT_CODES:
        return ack
    kind = "rejected" if ack.code in REJECT_CODES else "reported an application error for"
    detail = f": {ack.text}" if ack.text else " (no MSA-3/ERR text)"
    raise AckError(f"{peer} {kind} message {ack.control_id or '?'} ({ack.code}){detail}", ack=ack)


def outgoing_control_id(message: str) -> str:
    """MSH-10 of a message about to be sent; ``SendError`` (permanent) when it has none."""
    try:
        msh = parse_msh(message)
    except ValueError as exc:
        raise SendError(f"cannot send: {exc}", permanent=True) from exc
    if not msh.control_id:
        raise SendError("cannot send: MSH-10 message control id is empty", permanent=True)
    return msh.control_id


class _Retryable(Exception):
    """A transport failure (refused, reset, closed, timed out) worth a reconnect and a resend.

    MLLP Release 2 (Appendix C) has the source retransmit when no acknowledgment arrives; the
    receiver recognises a duplicate by its unchanged MSH-10.
    """


class _AckReader:
    """Accumulates bytes until one complete ``VT ... FS CR`` block; strict about everything else.

    Only line ends around the block are forgiven (some receivers send ``FS CR LF``). Strict because on the sending side anything else means the port is not an MLLP receiver (an
    HTTP server answering, a DICOM SCP) or it is out of step with us; saying so beats guessing.
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
        end = buffer.find(b"\x1c", self._scanned)
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


def _set_nodelay(sock: socket.socket) -> None:
    # MLLP is request/response with small frames: Nagle plus delayed ACKs costs ~40 ms per exchange.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ClientSettings:
    """What both MLLP clients are configured with (the contract is described on :class:`MllpClient`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        encoding: str = "utf-8",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff = backoff
        self.encoding = encoding
        self.max_message_bytes = max_message_bytes
        self.connections_opened = 0
        self._lock = self._new_lock()  # one message in flight per connection (original-mode MLLP)

    def _new_lock(self) -> threading.Lock | asyncio.Lock:
        raise TypeError("use MllpClient or AsyncMllpClient")

    def _drop(self) -> None:
        raise TypeError("use MllpClient or AsyncMllpClient")

    def _retry_delay(self, exc: _Retryable, attempt: int) -> float:
        """After transport failure ``exc`` of ``attempt`` (1-based): drop the connection and return the
        seconds to wait before the next attempt (``backoff`` doubling), or raise :class:`SendError` when
        that was the last of the ``retries`` + 1 attempts."""
        self._drop()
        if attempt > self.retries:
            raise SendError(f"{self.peer}: {exc} (gave up after {attempt} attempts)") from exc
        delay = self.backoff * 2 ** (attempt - 1)
        logger.info("%s: %s; retrying in %.2f s", self.peer, exc, delay)
        return delay

    def _accepted_ack(self, raw: bytes, control_id: str, latency: float, attempt: int) -> Ack:
        """The peer's answer as an :class:`Ack`, raised as :class:`AckError` unless it accepts ours."""
        ack = parse_ack(raw.decode(self.encoding, errors="replace"), expected_control_id=control_id,
                        peer=self.peer, latency_s=latency, attempts=attempt)
        return check_ack(ack, peer=self.peer)

    @property
    def peer(self) -> str:
        return f"MLLP{'/TLS' if self.ssl_context is not None else ''} {self.host}:{self.port}"


class MllpClient(_ClientSettings):
    """Blocking MLLP sender: one persistent connection per endpoint, shared safely between threads.

    HL7 v2.5.1 Appendix C framing, chapter 2.9 original-mode acknowledgment. Connects lazily,
    reconnects when the peer closed the idle connection, and on transport errors (refused, reset,
    closed mid-ACK, no ACK within ``read_timeout``) reconnects and resends up to ``retries`` more
    times, sleeping ``backoff * 2**n`` seconds between attempts. Negative ACKs are never retried.

    With ``ssl_context`` (see :func:`simulations.transport.tls.client_context`) every connection
    is MLLP inside TLS (IHE ITI TF-2 ATNA secure node practice), the handshake bounded by
    ``connect_timeout`` and the certificate checked against ``host``. A certificate that does not
    verify raises a permanent ``SendError`` at once; other handshake failures (a peer not speaking
    TLS, a reset, no answer) are transport failures, retried like a refused connect.
    """

    _sock: socket.socket | None = None  # the persistent connection, opened on first send

    def _new_lock(self) -> threading.Lock:
        return threading.Lock()

    def send(self, message: str) -> Ack:
        """Send one HL7 message and return its accepting ACK (MSA-1 AA/CA, MSA-2 = sent MSH-10).

        Raises :class:`AckError` (permanent) for AE/AR/CE/CR, ``SendError`` (not permanent) for a
        malformed answer or when every attempt failed at the transport level.
        """
        control_id = outgoing_control_id(message)
        block = frame(message.encode(self.encoding))
        with self._lock:
            attempts = self.retries + 1
            for attempt in range(1, attempts + 1):
                try:
                    raw, latency = self._exchange(block)
                except _Retryable as exc:
                    time.sleep(self._retry_delay(exc, attempt))
                    continue
                except SendError:
                    self._drop()  # the connection is out of step with the peer; start clean next time
                    raise
                return self._accepted_ack(raw, control_id, latency, attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    def _exchange(self, block: bytes) -> tuple[bytes, float]:
        sock = self._connection()
        started = time.perf_counter()
        sock.settimeout(self.read_timeout)  # bounds a send into a full window, not just the ACK wait
        try:
            sock.sendall(block)
        except OSError as exc:
            raise _Retryable(f"sending failed ({exc})") from exc
        reader = _AckReader(max_bytes=self.max_message_bytes, peer=self.peer)
        deadline = started + self.read_timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise _Retryable(f"no complete ACK within {self.read_timeout} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError as exc:
                raise _Retryable(f"no complete ACK within {self.read_timeout} s") from exc
            except OSError as exc:
                raise _Retryable(f"connection failed while waiting for the ACK ({exc})") from exc
            if not data:
                raise _Retryable("peer closed the connection before the ACK was complete")
            payload = reader.feed(data)
            if payload is not None:
                return payload, time.perf_counter() - started

    def _connection(self) -> socket.socket:
        sock = self._sock
        if sock is not None and not self._still_open(sock):
            self._drop()
            sock = None
        if sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            except TimeoutError as exc:
                raise _Retryable(f"connect timed out after {self.connect_timeout} s") from exc
            except OSError as exc:
                raise _Retryable(f"connect failed ({exc})") from exc
            _set_nodelay(sock)
            if self.ssl_context is not None:
                sock = self._handshake(sock, self.ssl_context)
            self._sock = sock
            self.connections_opened += 1
        return sock

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """TLS client handshake on the fresh connection, within ``connect_timeout`` (still the socket's)."""
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:  # ssl.SSLError, TimeoutError, resets
            sock.close()
            text, permanent = describe_handshake_failure(exc, timeout=self.connect_timeout)
            if permanent:
                raise SendError(f"{self.peer}: {text}", permanent=True, status="TLS") from exc
            raise _Retryable(text) from exc

    def _still_open(self, sock: socket.socket) -> bool:
        """Peek without blocking: EOF, a reset or unsolicited bytes mean the idle connection is unusable."""
        sock.settimeout(0.0)
        try:
            if isinstance(sock, ssl.SSLSocket):
                # TLS sockets cannot peek, and the raw socket may hold records that are not data
                # (TLS 1.3 session tickets arrive after the handshake): read through TLS instead.
                # Consuming a byte is harmless, since any data here means the connection is dropped.
                data = sock.recv(1)
            else:
                data = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(self.read_timeout)
        if data:
            logger.warning("%s sent unsolicited bytes on an idle connection; reconnecting", self.peer)
        return False

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Close the connection (a later ``send`` reconnects)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ClientProtocol(asyncio.Protocol):
    """Buffers what the peer sends and wakes the one waiting ``send``; remembers EOF/reset."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class AsyncMllpClient(_ClientSettings):
    """asyncio MLLP sender with the same contract as :class:`MllpClient` (HL7 v2.5.1 Appendix C).

    One persistent connection per endpoint; concurrent ``send`` calls on one client are serialised
    by an ``asyncio.Lock`` because original-mode MLLP has one message in flight per connection.
    Use one client per event loop. ``ssl_context`` as for :class:`MllpClient`.
    """

    _protocol: _ClientProtocol | None = None  # the persistent connection, opened on first send

    def _new_lock(self) -> asyncio.Lock:
        return asyncio.Lock()

    async def send(self, message: str) -> Ack:
        """Send one HL7 message and return its accepting ACK; errors as :meth:`MllpClient.send`."""
        control_id = outgoing_control_id(message)
        block = frame(message.encode(self.encoding))
        async with self._lock:
            attempts = self.retries + 1
            for attempt in range(1, attempts + 1):
                try:
                    raw, latency = await self._exchange(block)
                except _Retryable as exc:
                    await asyncio.sleep(self._retry_delay(exc, attempt))
                    continue
                except SendError:
                    self._drop()
                    raise
                return self._accepted_ack(raw, control_id, latency, attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _exchange(self, block: bytes) -> tuple[bytes, float]:
        protocol = await self._connection()
        transport = protocol.transport
        assert transport is not None
        started = time.perf_counter()
        transport.write(block)
        reader = _AckReader(max_bytes=self.max_message_bytes, peer=self.peer)
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    if protocol.buffer:
                        payload = reader.feed(protocol.take())
                        if payload is not None:
                            return payload, time.perf_counter() - started
                    if protocol.closed:
                        reason = f" ({protocol.error})" if protocol.error else ""
                        raise _Retryable(f"peer closed the connection before the ACK was complete{reason}")
                    await protocol.wait()
        except TimeoutError as exc:
            raise _Retryable(f"no complete ACK within {self.read_timeout} s") from exc

    async def _connection(self) -> _ClientProtocol:
        protocol = self._protocol
        if protocol is not None and (protocol.closed or protocol.buffer):
            if protocol.buffer:
                logger.warning("%s sent unsolicited bytes on an idle connection; reconnecting", self.peer)
            self._drop()
            protocol = None
        if protocol is None:
            loop = asyncio.get_running_loop()
            context = self.ssl_context
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if context is None:
                        _, protocol = await loop.create_connection(_ClientProtocol, self.host, self.port)
                    else:
                        # The enclosing timeout bounds connect and handshake together.
                        _, protocol = await loop.create_connection(
                            _ClientProtocol, self.host, self.port, ssl=context, server_hostname=self.host
                        )
            except TimeoutError as exc:
                what = "connect" if context is None else "connect and TLS handshake"
                hint = "" if context is None else " (does the peer speak TLS on this port?)"
                raise _Retryable(f"{what} timed out after {self.connect_timeout} s{hint}") from exc
            except ssl.SSLError as exc:
                text, permanent = describe_handshake_failure(exc, timeout=self.connect_timeout)
                if permanent:
                    raise SendError(f"{self.peer}: {text}", permanent=True, status="TLS") from exc
                raise _Retryable(text) from exc
            except OSError as exc:
                what = "connect" if context is None else "connect or TLS handshake"
                raise _Retryable(f"{what} failed ({exc})") from exc
            self._protocol = protocol
            self.connections_opened += 1
        return protocol

    def _drop(self) -> None:
        if self._protocol is not None:
            if self._protocol.transport is not None:
                self._protocol.transport.abort()
            self._protocol = None

    async def close(self) -> None:
        """Close the connection (a later ``send`` reconnects)."""
        async with self._lock:
            self._drop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def ping_message(control_id: str | None = None) -> str:
    """A minimal NMD^N02 application management message (HL7 v2.5.1 section 14.3.2) for liveness checks.

    Chapter 14 network management is the one v2 message family meant for "are you there" traffic
    and carries no patient data, so it cannot create anything on the receiver. Receivers that do not
    support it still answer AR/AE, which proves an HL7 application is listening just as well.
    """
    now = time.strftime("%Y%m%d%H%M%S")
    control_id = control_id or f"PING{time.time_ns() % 10**15}"
    return f"MSH|^~\\&|YEETER|YEETER|||{now}||NMD^N02^NMD_N02|{control_id}|P|2.5.1\rNCK|{now}\r"


def mllp_ping(
    host: str,
    port: int,
    *,
    timeout: float = 5.0,
    encoding: str = "utf-8",
    ssl_context: ssl.SSLContext | None = None,
) -> float:
    """Round-trip latency in seconds of one NMD^N02 exchange (:func:`ping_message`) with an MLLP peer.

    Any well-formed ACK for the ping counts, including AE/AR; no answer, a malformed frame or a
    non-HL7 answer raises ``SendError``. One attempt, ``timeout`` for connect (and the TLS
    handshake when ``ssl_context`` is given) and for the ACK.
    """
    client = MllpClient(
        host,
        port,
        connect_timeout=timeout,
        read_timeout=timeout,
        retries=0,
        encoding=encoding,
        ssl_context=ssl_context,
    )
    with client:
        try:
            return client.send(ping_message()).latency_s
        except AckError as exc:
            return exc.ack.latency_s

