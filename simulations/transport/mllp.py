"""HL7 v2 over MLLP, the sending side: blocking and asyncio clients, retries, and a liveness ping.

Framing is the Minimal Lower Layer Protocol of HL7 v2.5.1 Appendix C (MLLP Release 2,
:mod:`simulations.transport.mllp_framing`): every message travels as ``<VT> message <FS><CR>`` and
the receiver answers each one with an acknowledgment framed the same way, one exchange at a time
on a persistent connection. What an ACK means and how it is checked (HL7 v2.5.1 chapter 2.9, MSA
2.15.8) is :mod:`simulations.transport.mllp_ack`.

Every failure reaches the caller as :class:`~simulations.transport.errors.SendError` (or its
subclass :class:`~simulations.transport.mllp_ack.AckError` when the peer answered with a negative
ACK), never as a hang: connects and reads have timeouts, frames are bounded, and anything a peer
sends that is not an MLLP frame holding an ACK for the message just sent is reported with what was
received.

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
from typing import Self

from simulations.transport.errors import SendError
from simulations.transport.mllp_ack import Ack, AckError
from simulations.transport.mllp_framing import AckReader, set_nodelay, stream_transport
from simulations.transport.mllp_sender import MllpSender, Retryable

logger = logging.getLogger(__name__)


class MllpClient(MllpSender):
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
        control_id, block = self._block(message)
        with self._lock:
            for attempt in range(1, self.retries + 2):
                try:
                    raw, latency = self._exchange(block)
                except Retryable as exc:
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
            raise Retryable(f"sending failed ({exc})") from exc
        reader = AckReader(max_bytes=self.max_message_bytes, peer=self.peer)
        deadline = started + self.read_timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise Retryable(f"no complete ACK within {self.read_timeout} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError as exc:
                raise Retryable(f"no complete ACK within {self.read_timeout} s") from exc
            except OSError as exc:
                raise Retryable(f"connection failed while waiting for the ACK ({exc})") from exc
            if not data:
                raise Retryable("peer closed the connection before the ACK was complete")
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
                raise Retryable(f"connect timed out after {self.connect_timeout} s") from exc
            except OSError as exc:
                raise Retryable(f"connect failed ({exc})") from exc
            set_nodelay(sock)
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
            raise self._handshake_failure(exc) from exc

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
        self.transport = stream_transport(transport)

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


class AsyncMllpClient(MllpSender):
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
        control_id, block = self._block(message)
        async with self._lock:
            for attempt in range(1, self.retries + 2):
                try:
                    raw, latency = await self._exchange(block)
                except Retryable as exc:
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
        reader = AckReader(max_bytes=self.max_message_bytes, peer=self.peer)
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    if protocol.buffer:
                        payload = reader.feed(protocol.take())
                        if payload is not None:
                            return payload, time.perf_counter() - started
                    if protocol.closed:
                        reason = f" ({protocol.error})" if protocol.error else ""
                        raise Retryable(f"peer closed the connection before the ACK was complete{reason}")
                    await protocol.wait()
        except TimeoutError as exc:
            raise Retryable(f"no complete ACK within {self.read_timeout} s") from exc

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
                raise Retryable(f"{what} timed out after {self.connect_timeout} s{hint}") from exc
            except ssl.SSLError as exc:
                raise self._handshake_failure(exc) from exc
            except OSError as exc:
                what = "connect" if context is None else "connect or TLS handshake"
                raise Retryable(f"{what} failed ({exc})") from exc
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


def _ping_client[C: (MllpClient, AsyncMllpClient)](
    kind: type[C], host: str, port: int, timeout: float, encoding: str, ssl_context: ssl.SSLContext | None
) -> C:
    """The client of one ping: one attempt, ``timeout`` for connect (and TLS handshake) and for the ACK."""
    return kind(host, port, connect_timeout=timeout, read_timeout=timeout, retries=0, encoding=encoding,
                ssl_context=ssl_context)


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
    with _ping_client(MllpClient, host, port, timeout, encoding, ssl_context) as client:
        try:
            return client.send(ping_message()).latency_s
        except AckError as exc:
            return exc.ack.latency_s


async def async_mllp_ping(
    host: str,
    port: int,
    *,
    timeout: float = 5.0,
    encoding: str = "utf-8",
    ssl_context: ssl.SSLContext | None = None,
) -> float:
    """asyncio variant of :func:`mllp_ping`."""
    async with _ping_client(AsyncMllpClient, host, port, timeout, encoding, ssl_context) as client:
        try:
            return (await client.send(ping_message())).latency_s
        except AckError as exc:
            return exc.ack.latency_s
