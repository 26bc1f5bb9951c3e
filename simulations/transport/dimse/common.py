"""Shared DIMSE plumbing: TCP_NODELAY on every association socket, AE construction, endpoints, TLS."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from simulations.transport.errors import SendError
from simulations.transport.tls import diagnose

LOGGER = logging.getLogger(__name__)


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


class _PerPeerLimitedServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor that closes a connection at once when its address already holds
    ``max_per_peer`` associations (socketserver's ``verify_request`` hook), so one peer's idle or
    greedy connections cannot take every slot of ``AE.maximum_associations`` from the others."""

    max_per_peer = 32
    request_queue_size = 128  # socketserver's listen() backlog; pynetdicom's 5 made connects wait seconds

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        held = 0
        for assoc in self.active_associations:
            try:
                held += assoc.requestor.address == host
            except ValueError:  # no address yet: just accepted
                continue
        if held >= self.max_per_peer:
            LOGGER.warning("%s holds %d associations with %s (the per-peer limit); closing a new one",
                           host, held, self.ae_title)
            return False
        return True

    def service_actions(self) -> None:
        """Nothing between requests. pynetdicom's own runs a full ``gc.collect()`` every 60 requests,
        because its dead association threads "aren't being garbage collected": the cyclic collector
        finds them anyway on its own schedule. Forced, each full pass walks every object of the process
        (a Django app and a run's state): ``py-spy --gil`` over ``bench/simulate.py`` found 3 s of the
        run process's GIL-holding time in them, every other thread of the run stalled meanwhile."""


_STRICT_UI = _config.VALIDATORS["UI"]


def _validate_ui(value: Any) -> tuple[bool, str]:
    """pynetdicom's UI validator, lenient only inside our own SCPs' associations.

    pynetdicom refuses to decode a command whose UID breaks the rules (over 64 characters, say): it
    logs a traceback and aborts the association instead of answering. Our SCPs validate those UIDs
    themselves and answer with a status (PS3.7 C.5.9 Invalid Object Instance), so in their
    association and DUL threads any value passes here; everywhere else (our SCUs) the check is
    pynetdicom's own.
    """
    thread = threading.current_thread()
    assoc = getattr(thread, "assoc", thread)  # a DUL reactor thread knows its association
    if isinstance(getattr(assoc, "_server", None), _PerPeerLimitedServer):
        return True, ""
    return _STRICT_UI(value)


_config.VALIDATORS["UI"] = _validate_ui


class PynetdicomScp(ABC):
    """Lifecycle of an SCP served by pynetdicom on ``host:port`` (port 0: any free port, read ``.port``).
    Subclasses name their presentation contexts and event handlers.

    Silent and greedy peers are bounded (PS3.8 §9.1.5): ``artim_timeout`` is pynetdicom's ACSE
    timeout, which also runs the ARTIM timer for a connection that sends no A-ASSOCIATE-RQ;
    ``network_timeout`` aborts an established association that sends nothing for that long;
    ``dimse_timeout`` bounds a wait for a DIMSE message; ``max_associations`` is the AE's maximum
    (beyond it A-ASSOCIATE-RJ, transient, local limit exceeded); ``max_per_peer`` connections from
    one address at most (beyond it the connection is closed at once).
    """

    default_ae_title = "YEETER"

    def __init__(
        self,
        *,
        ae_title: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        artim_timeout: float = 10.0,
        network_timeout: float = 60.0,
        dimse_timeout: float = 30.0,
        max_associations: int = 64,
        max_per_peer: int = 32,
    ) -> None:
        self.ae_title = ae_title or self.default_ae_title
        self.host = host
        self._requested_port = port
        self.artim_timeout = artim_timeout
        self.network_timeout = network_timeout
        self.dimse_timeout = dimse_timeout
        self.max_associations = max_associations
        self.max_per_peer = max_per_peer
        self._ae: AE | None = None
        self._server: _PerPeerLimitedServer | None = None
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
        ae.acse_timeout = self.artim_timeout
        ae.network_timeout = self.network_timeout
        ae.dimse_timeout = self.dimse_timeout
        ae.maximum_associations = max(self.max_associations, 1)
        handlers = [(evt.EVT_CONN_OPEN, handle_conn_open), *self.event_handlers()]
        # AE.start_server(block=False) with our server class (it always uses its own): the same
        # make_server + serve_forever thread, and the server registered with the AE for shutdown().
        server = ae.make_server((self.host, self._requested_port), evt_handlers=handlers,
                                server_class=_PerPeerLimitedServer)
        server.max_per_peer = self.max_per_peer
        threading.Thread(target=server.serve_forever, name=f"{type(self).__name__}-{server.server_address[1]}",
                         daemon=True).start()
        ae._servers.append(server)  # noqa: SLF001 - what start_server does, so ae.shutdown() stops it
        self._ae = ae
        self._server = server
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
            self._server = None
            self._port = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
