"""What the two MLLP senders share (HL7 v2.5.1 Appendix C, chapter 2.9): settings, retries, ACK checks.

:class:`~simulations.transport.mllp.MllpClient` (blocking) and
:class:`~simulations.transport.mllp.AsyncMllpClient` (asyncio) differ only in how they wait; what
counts as a transport failure worth a resend (:class:`Retryable`), how long to back off, what a TLS
handshake failure means and whether an answer accepts the message sent are decided here, once.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
import ssl
import threading

from simulations.transport.errors import SendError
from simulations.transport.mllp_ack import Ack, check_ack, outgoing_control_id, parse_ack
from simulations.transport.mllp_framing import DEFAULT_MAX_MESSAGE_BYTES, frame
from simulations.transport.tls import describe_handshake_failure

logger = logging.getLogger(__name__)


class Retryable(Exception):
    """A transport failure (refused, reset, closed, timed out) worth a reconnect and a resend.

    MLLP Release 2 (Appendix C) has the source retransmit when no acknowledgment arrives; the
    receiver recognises a duplicate by its unchanged MSH-10.
    """


class MllpSender(ABC):
    """What both MLLP clients share: their configuration, the retry policy and how an answer is judged.

    The contract is described on :class:`~simulations.transport.mllp.MllpClient`; subclasses supply
    the lock and the connection (``_new_lock``, ``_drop``).
    """

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

    @abstractmethod
    def _new_lock(self) -> threading.Lock | asyncio.Lock:
        """The lock that keeps one message in flight: a thread lock or an asyncio one."""

    def _block(self, message: str) -> tuple[str, bytes]:
        """The MSH-10 the ACK must echo, and the message framed for the wire."""
        return outgoing_control_id(message), frame(message.encode(self.encoding))

    def _accepted_ack(self, raw: bytes, control_id: str, latency: float, attempt: int) -> Ack:
        """The peer's answer as an :class:`Ack`, raised as :class:`AckError` unless it accepts ours."""
        ack = parse_ack(raw.decode(self.encoding, errors="replace"), expected_control_id=control_id,
                        peer=self.peer, latency_s=latency, attempts=attempt)
        return check_ack(ack, peer=self.peer)

    def _retry_delay(self, exc: Retryable, attempt: int) -> float:
        """After a transport failure: drop the connection and return the backoff before the next attempt
        (``backoff * 2**n``), or raise ``SendError`` when that was the last of ``retries + 1``."""
        self._drop()
        if attempt > self.retries:
            raise SendError(f"{self.peer}: {exc} (gave up after {attempt} attempts)") from exc
        delay = self.backoff * 2 ** (attempt - 1)
        logger.info("%s: %s; retrying in %.2f s", self.peer, exc, delay)
        return delay

    def _handshake_failure(self, exc: OSError) -> SendError | Retryable:
        """What a failed TLS handshake means: permanent (a certificate that does not verify) or retryable."""
        text, permanent = describe_handshake_failure(exc, timeout=self.connect_timeout)
        if permanent:
            return SendError(f"{self.peer}: {text}", permanent=True, status="TLS")
        return Retryable(text)

    @abstractmethod
    def _drop(self) -> None:
        """Close the connection (after a transport failure), so the next attempt opens a new one."""

    @property
    def peer(self) -> str:
        return f"MLLP{'/TLS' if self.ssl_context is not None else ''} {self.host}:{self.port}"
