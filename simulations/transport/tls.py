"""TLS for the transports: one way to build contexts and one way to report failed handshakes.

HL7 v2 has no TLS profile of its own; MLLP over TLS is the IHE ITI TF-2 "Secure Node" practice
(ATNA, ITI-19: TLS on the MLLP connection, no change to the framing inside it). DICOM TLS is PS3.15
Annex B (the BCP 195 secure transport connection profiles, which ask for TLS 1.2 or newer). Both
come down to the same client behaviour, implemented here once:

* :func:`client_context` — TLS 1.2 minimum; with ``verify`` the peer's chain is checked against
  ``ca_file`` (or the system store) and its certificate must name the host we dialled (RFC 6125:
  ``subjectAltName`` DNS name, or IP address when we dialled one);
* :func:`wrap_client` — run the handshake on a connected socket, bounded by the socket's timeout;
* :func:`describe_handshake_failure` / :func:`handshake_error` — one vocabulary for what went wrong.
  A certificate the peer presented and we reject (unknown issuer, expired, wrong host name), or a
  certificate/protocol problem the peer reports in an alert, is *permanent*: resending cannot change
  the verdict until someone fixes configuration. Everything at connection level (no answer, reset,
  a peer that does not speak TLS on that port, EOF mid-handshake) is *transient*, like the same
  failures without TLS.

A bad setting (CA file missing, unreadable, holding no certificate) raises :class:`TlsConfigError`,
which is both a ``ValueError`` (for forms and configuration checks) and a permanent ``SendError``
(for the runner, which records it on the step like any other transport failure).
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from simulations.transport.errors import SendError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2  # BCP 195 (RFC 9325) and DICOM PS3.15 B.9/B.10 profiles

# OpenSSL reasons meaning the bytes that came back were not a TLS record: the port speaks something else.
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "RECORD_LENGTH_MISMATCH",
        "UNEXPECTED_RECORD",
    }
)
# Versions we and the peer cannot agree on: configuration, not luck.
_VERSION_REASONS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "TLSV1_ALERT_PROTOCOL_VERSION", "VERSION_TOO_LOW"}
)


class TlsConfigError(SendError, ValueError):
    """A TLS setting that cannot work (CA, certificate or key file missing, unreadable, not usable).

    Always permanent: nothing on the wire changes until the configuration does.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True, status="TLS configuration")


def client_context(*, verify: bool = True, ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for connecting to a TLS server (PS3.15 Annex B, BCP 195: TLS 1.2 or newer).

    ``verify`` True checks the peer's certificate chain and that the certificate names the host
    dialled (the caller passes that host as ``server_hostname``; an IP address is matched against
    ``subjectAltName`` IP entries). Trust comes from ``ca_file`` (PEM, one or more certificates, or
    one DER certificate) when given, else from the system store. ``verify`` False encrypts without
    authenticating the peer (for test beds with throwaway certificates); ``ca_file`` is then not read.
    An empty ``ca_file`` counts as none, as the Endpoint model stores "not set". Raises
    :class:`TlsConfigError` when ``ca_file`` is missing, unreadable or holds no certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    context.minimum_version = MINIMUM_VERSION
    if not verify:
        context.check_hostname = False  # must be turned off before verify_mode may drop to CERT_NONE
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        _load_ca_file(context, Path(ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


def server_context(
    *, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None
) -> ssl.SSLContext:
    """An ``SSLContext`` for our listeners (MLLP, Storage SCP) presenting ``cert_file`` (PEM chain).

    ``key_file`` defaults to the certificate file (a PEM holding both). TLS 1.2 or newer; client
    certificates are not requested. Raises :class:`TlsConfigError` for a missing or unusable pair.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    for label, path in (("certificate", cert_file), ("private key", key_file)):
        if path is not None and not Path(path).is_file():
            raise TlsConfigError(f"TLS {label} file {path} does not exist or is not a file")
    try:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS certificate {cert_file} and key {key_file or cert_file} cannot be used together: "
            f"{exc.reason or exc}"
        ) from exc
    except OSError as exc:
        raise TlsConfigError(f"TLS certificate {cert_file} or key cannot be read: {exc.strerror or exc}") from exc
    return context


def _load_ca_file(context: ssl.SSLContext, path: Path) -> None:
    if not path.exists():
        raise TlsConfigError(f"TLS CA file {path} does not exist")
    if not path.is_file():
        raise TlsConfigError(f"TLS CA file {path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"TLS CA file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        if b"-----BEGIN" in data:
            context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        else:
            context.load_verify_locations(cadata=data)  # bytes: one DER certificate
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise TlsConfigError(f"TLS CA file {path} holds no usable certificate ({reason})") from exc


def describe_handshake_failure(exc: BaseException, *, timeout: float | None = None) -> tuple[str, bool]:
    """(sentence, permanent) for an exception raised while connecting or handshaking with TLS.

    Permanent: our verification of the peer's certificate failed (issuer unknown, expired, host
    name mismatch — OpenSSL's verify message is quoted), the peer refused ours or our offer with a
    certificate or protocol-version alert, or no common TLS version exists. Transient: timeouts,
    resets, EOF mid-handshake and peers that answer with something that is not TLS.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS handshake failed: the peer's certificate did not verify: {detail.rstrip('.')}", True
    if isinstance(exc, TimeoutError):
        wait = f" within {timeout:g} s" if timeout else ""
        return f"TLS handshake failed: no answer{wait} (does the peer speak TLS on this port?)", False
    if isinstance(exc, ssl.SSLEOFError) or (
        isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return (
            "TLS handshake failed: the peer closed the connection during the handshake "
            "(does it speak TLS on this port? does it require a client certificate?)",
            False,
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        if reason in _NOT_TLS_REASONS:
            return f"TLS handshake failed: the peer does not speak TLS on this port ({reason})", False
        if reason in _VERSION_REASONS:
            return f"TLS handshake failed: no TLS version both sides accept ({reason}; we require TLS 1.2+)", True
        if "ALERT" in reason:
            permanent = "CERTIFICATE" in reason or "UNKNOWN_CA" in reason or "PROTOCOL_VERSION" in reason
            return f"TLS handshake failed: the peer refused it ({reason})", permanent
        return f"TLS handshake failed: {reason}", False
    if isinstance(exc, OSError):
        return f"TLS handshake failed: {exc.strerror or exc}", False
    return f"TLS handshake failed: {exc}", False


def handshake_error(exc: BaseException, peer: str, *, timeout: float | None = None) -> SendError:
    """The :class:`SendError` for a failed TLS connection to ``peer`` (see :func:`describe_handshake_failure`)."""
    text, permanent = describe_handshake_failure(exc, timeout=timeout)
    return SendError(f"{peer}: {text}", permanent=permanent, status="TLS" if permanent else None)


def wrap_client(sock: socket.socket, context: ssl.SSLContext, *, server_hostname: str, peer: str) -> ssl.SSLSocket:
    """Run the client TLS handshake on the connected ``sock`` and return the TLS socket.

    The handshake is bounded by ``sock``'s timeout. On failure ``sock`` is closed and a
    :class:`SendError` naming ``peer`` is raised (permanent for certificate problems).
    """
    timeout = sock.gettimeout()
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except OSError as exc:  # ssl.SSLError, TimeoutError and resets are all OSErrors
        sock.close()
        raise handshake_error(exc, peer, timeout=timeout) from exc


def diagnose(host: str, port: int, context: ssl.SSLContext, *, timeout: float, peer: str) -> SendError | None:
    """Why a TLS connection to ``host:port`` fails, found with one connection and handshake of our own.

    For libraries that swallow the handshake exception (pynetdicom logs it and reports only "no
    association"): call this after their failure. Returns None when the TCP connect fails too
    (the library's own message covers that) or when this handshake succeeds (the failure was
    elsewhere); the probe connection is closed at once either way.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    try:
        tls = wrap_client(sock, context, server_hostname=host, peer=peer)
    except SendError as error:
        return error
    tls.close()
    return None


__all__ = [
    "MINIMUM_VERSION",
    "TlsConfigError",
    "client_context",
    "describe_handshake_failure",
    "diagnose",
    "handshake_error",
    "server_context",
    "wrap_client",
]
