"""Shared DIMSE plumbing: TCP_NODELAY on every association socket, AE construction, endpoints, TLS."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
import ssl
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association

from simulations.transport.errors import SendError
from simulations.transport.tls import diagnose


@dataclass(frozen=True, slots=True)
class DicomPeer:
    """Where a DICOM service lives: ``AET@host:port`` plus our calling AE title.

    ``tls`` (a client context from :func:`simulations.transport.tls.client_context`) makes every
    association with this peer run inside TLS (PS3.15 Annex B secure transport connection
    profiles), the peer's certificate checked against ``host``. It is configuration held by
    reference, not data: left out of equality, hashing and ``repr``, and never serialised
    (endpoints store the TLS settings, and rebuild the context from them).
    """

    host: str
    port: int
    ae_title: str
    calling_ae_title: str = "YEETER"
    timeout: float = 30.0
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, calling_ae_title: str = "YEETER") -> "DicomPeer":
        """Parse ``AET@host:port`` (as the CLI takes it); raises ``ValueError`` with a sentence."""
        aet, sep, hostport = text.partition("@")
        host, sep2, port = hostport.rpartition(":")
        if not sep or not sep2 or not aet or not host or not port.isdigit():
            raise ValueError(f"expected AET@HOST:PORT, got {text!r}")
        if len(aet) > 16:
            raise ValueError(f"AE title {aet!r} is longer than 16 characters")
        port_no = int(port)
        if not 0 < port_no < 65536:
            raise ValueError(f"port {port_no} is out of range 1-65535")
        return cls(host=host, port=port_no, ae_title=aet, calling_ae_title=calling_ae_title)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{' (TLS)' if self.tls is not None else ''}"


def set_nodelay(assoc: Association) -> None:
    """Disable Nagle on an established association's socket.

    pynetdicom never sets TCP_NODELAY; with a peer that delays ACKs every DIMSE exchange then
    waits ~40 ms (measured: 44 ms per operation against dcmtk). Call right after ``associate()``.
    """
    transport = getattr(assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer may already have gone; the next DIMSE call reports that properly


# A-ASSOCIATE-RJ (result source, reason) -> text, PS3.8 §9.3.4 Table 9-21
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


# SendError.status of an association accepted without any usable presentation context: the peer
# does not offer the service (callers may treat that as "not available" rather than a failure).
NO_ACCEPTED_CONTEXT = "no accepted presentation context"


def reject_reason(source: int, reason: int) -> str:
    """Text of an A-ASSOCIATE-RJ reason/diagnostic (PS3.8 Table 9-21)."""
    return _REJECT_REASONS.get((source, reason), f"reason {reason} (source {source})")


def association_error(assoc: Association, peer: DicomPeer, purpose: str = "association") -> SendError:
    """The SendError for an association that did not get established: rejected, aborted, or no peer.

    A rejection with result 1 (rejected-permanent, PS3.8 §9.3.4) is permanent, and so is an
    acceptance without a usable presentation context (pynetdicom then aborts); result 2
    (rejected-transient), other aborts and connection failures may succeed later.
    """
    primitive = assoc.acceptor.primitive
    if assoc.is_rejected:
        result = getattr(primitive, "result", None)
        source = getattr(primitive, "result_source", None) or 0
        diagnostic = getattr(primitive, "diagnostic", None) or 0
        kind = "permanently" if result == 0x01 else "transiently"
        return SendError(
            f"{peer} rejected the {purpose} association {kind}: {reject_reason(source, diagnostic)}",
            permanent=result == 0x01,
            status=f"A-ASSOCIATE-RJ {result}/{source}/{diagnostic}",
        )
    if assoc.is_aborted and primitive is not None and getattr(primitive, "result", None) == 0x00:
        return SendError(f"{peer} accepted no presentation context for {purpose}", permanent=True,
                         status=NO_ACCEPTED_CONTEXT)
    if assoc.is_aborted:
        return SendError(f"{peer} aborted the {purpose} association during negotiation")
    return SendError(f"cannot open a {purpose} association with {peer}: no answer or connection refused")


def associate(peer: DicomPeer, contexts: list[tuple[str, list[str] | None]], *, purpose: str,
              timeout: float | None = None, **kwargs: Any) -> Association:
    """An established association with ``peer`` for ``contexts`` [(abstract syntax, transfer
    syntaxes or None for the defaults)], Nagle off; :class:`SendError` otherwise.

    ``timeout`` (default ``peer.timeout``) bounds connecting, ACSE, DIMSE and network idle time.
    Extra keyword arguments go to ``AE.associate`` (``evt_handlers``, ``ext_neg``). With
    ``peer.tls`` the connection runs inside TLS; a failed handshake becomes a SendError saying why
    (certificate problems permanent, see :mod:`simulations.transport.tls`).
    """
    seconds = peer.timeout if timeout is None else timeout
    ae = AE(ae_title=peer.calling_ae_title)
    for abstract_syntax, syntaxes in contexts:
        if syntaxes is None:
            ae.add_requested_context(abstract_syntax)
        else:
            ae.add_requested_context(abstract_syntax, syntaxes)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = seconds
    if peer.tls is not None:
        kwargs["tls_args"] = (peer.tls, peer.host)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
    if not assoc.is_established:
        error = association_error(assoc, peer, purpose)
        if peer.tls is not None and assoc.acceptor.primitive is None:
            # No A-ASSOCIATE-AC/RJ came back. pynetdicom logs a failed handshake and reports it as
            # an abort: repeat the handshake once ourselves to say what failed (certificate, not
            # TLS, no answer); if ours succeeds the original error stands.
            error = diagnose(peer.host, peer.port, peer.tls, timeout=seconds, peer=str(peer)) or error
        raise error
    set_nodelay(assoc)
    return assoc


def handle_conn_open(event: Any) -> None:
    """EVT_CONN_OPEN: disable Nagle on every accepted socket (see :func:`set_nodelay`)."""
    set_nodelay(event.assoc)


class PynetdicomScp(ABC):
    """Lifecycle of an SCP served by pynetdicom's ``AE.start_server`` on ``host:port`` (port 0: any
    free port, read ``.port``). Subclasses name their presentation contexts and event handlers."""

    default_ae_title = "YEETER"

    def __init__(self, *, ae_title: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.ae_title = ae_title or self.default_ae_title
        self.host = host
        self._requested_port = port
        self._ae: AE | None = None
        self._port: int | None = None

    @abstractmethod
    def supported_contexts(self) -> list[str]:
        """The abstract syntaxes this SCP accepts."""

    @abstractmethod
    def event_handlers(self) -> list[tuple]:
        """``(event, handler[, args])`` bindings besides TCP_NODELAY on connection open."""

    def start(self) -> None:
        """Start serving in background threads; returns once the socket listens."""
        if self._ae is not None:
            raise RuntimeError(f"this {type(self).__name__} is already running")
        ae = AE(ae_title=self.ae_title)
        for abstract_syntax in self.supported_contexts():
            ae.add_supported_context(abstract_syntax)
        handlers = [(evt.EVT_CONN_OPEN, handle_conn_open), *self.event_handlers()]
        server = ae.start_server((self.host, self._requested_port), block=False, evt_handlers=handlers)
        assert server is not None  # block=False always returns the server
        self._ae = ae
        self._port = int(server.server_address[1])

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {type(self).__name__} is not started")
        return self._port

    @property
    def peer(self) -> DicomPeer:
        """This SCP as a :class:`DicomPeer` for SCUs."""
        return DicomPeer(host=self.host, port=self.port, ae_title=self.ae_title)

    @property
    def active_associations(self) -> list[Association]:
        """The associations peers currently hold with this SCP (empty when stopped)."""
        return list(self._ae.active_associations) if self._ae is not None else []

    def stop(self) -> None:
        """Abort open associations and close the listening socket."""
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
            self._port = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
