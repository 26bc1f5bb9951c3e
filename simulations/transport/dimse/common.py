"""Shared DIMSE plumbing: TCP_NODELAY on every association socket, AE construction, endpoints."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pynetdicom.association import Association


@dataclass(frozen=True, slots=True)
class DicomPeer:
    """Where a DICOM service lives: ``AET@host:port`` plus our calling AE title."""

    host: str
    port: int
    ae_title: str
    calling_ae_title: str = "YEETER"
    timeout: float = 30.0

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
        return f"{self.ae_title}@{self.host}:{self.port}"


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
