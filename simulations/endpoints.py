"""Where a run sends things: transport-level targets resolved from ``Endpoint`` rows, CLI flags or the
built-in receivers, snapshotted into ``Run.endpoints`` so a run records exactly what it talked to."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generators.hl7 import HL7Config
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.tls import client_context


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """An endpoint's TLS choice as data (what a run records); :meth:`context` builds the client context."""

    verify: bool = True
    ca_file: str = ""

    def context(self) -> ssl.SSLContext:
        return _context(self.verify, self.ca_file)

    def to_json(self) -> dict[str, Any]:
        return {"verify": self.verify, "ca_file": self.ca_file}


@functools.lru_cache(maxsize=16)
def _context(verify: bool, ca_file: str) -> ssl.SSLContext:
    # One context per setting and process: loading the system trust store costs ~16 ms.
    return client_context(verify=verify, ca_file=ca_file or None)


@dataclass(frozen=True, slots=True)
class EndpointPeer(DicomPeer):
    """A :class:`DicomPeer` that remembers the TLS settings its context was built from."""

    tls_settings: TlsSettings | None = None

    @classmethod
    def build(cls, host: str, port: int, ae_title: str, *, calling_ae_title: str = "YEETER", timeout: float = 30.0,
              tls: TlsSettings | None = None) -> "EndpointPeer":
        return cls(host=host, port=port, ae_title=ae_title, calling_ae_title=calling_ae_title, timeout=timeout,
                   tls=tls.context() if tls else None, tls_settings=tls)


@dataclass(frozen=True)
class HL7Target:
    host: str
    port: int
    receiving_application: str = "RIS"
    receiving_facility: str = "YEETER_HOSP"
    version: str = "2.5.1"
    connect_timeout: float = 5.0
    timeout: float = 30.0
    tls: TlsSettings | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context() if self.tls else None

    def config(self, *, sending_application: str, sending_facility: str) -> HL7Config:
        return HL7Config(sending_application=sending_application, sending_facility=sending_facility,
                         receiving_application=self.receiving_application,
                         receiving_facility=self.receiving_facility, version=self.version)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{' (TLS)' if self.tls else ''}"

    @classmethod
    def parse(cls, text: str) -> "HL7Target":
        """``HOST:PORT`` as the CLI takes it; ``ValueError`` with a sentence otherwise."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, got {text!r}")
        return cls(host=host, port=int(port))


Target = HL7Target | DicomPeer | Path


@dataclass(frozen=True, slots=True)
class CommitListen:
    """Where a run listens for Storage Commitment reports sent on a new association (PS3.4 J.3.3).

    The PACS must have ``ae_title`` registered at this host and ``port`` (Orthanc
    ``DicomModalities``, dcm4chee "Storage Commitment SCU" AE): it connects back there with its
    N-EVENT-REPORT. ``host`` is the address we bind ("0.0.0.0": every interface).
    """

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, ae_title: str = "YEETER", host: str = "0.0.0.0") -> "CommitListen":
        """``[AET@][HOST:]PORT`` as ``--commit-listen`` takes it; ``ValueError`` with a sentence otherwise."""
        aet, sep, rest = text.rpartition("@")
        if sep and not aet:
            raise ValueError(f"expected [AET@][HOST:]PORT, got {text!r}: the AE title before @ is empty")
        bind, sep2, port = rest.rpartition(":")
        if sep2 and not bind:
            raise ValueError(f"expected [AET@][HOST:]PORT, got {text!r}: the host before : is empty")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected [AET@][HOST:]PORT with a port from 1 to 65535, got {text!r}")
        aet = aet or ae_title
        if len(aet) > 16 or not aet.isascii() or not aet.isprintable():
            raise ValueError(f"AE title {aet!r} is not 1-16 printable ASCII characters")
        return cls(ae_title=aet, host=bind or host, port=int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {"ae_title": self.ae_title, "host": self.host, "port": self.port}


@dataclass(frozen=True)
class EndpointSet:
    """The endpoint of each kind a run uses, plus named endpoints that individual steps may pick.

    ``builtin_worklist`` means SEND_DMWL publishes into the database served by the built-in MWL SCP;
    ``commit_listen`` is where the run's one commitment listener binds (None: reports are expected
    on the requesting association only).
    """

    by_kind: dict[str, Target] = field(default_factory=dict)
    named: dict[str, tuple[str, Target]] = field(default_factory=dict)
    builtin_worklist: bool = False
    commit_listen: CommitListen | None = None

    def get(self, kind: str, name: str | None = None) -> Target | None:
        if name:
            entry = self.named.get(name)
            return entry[1] if entry and entry[0] == kind else None
        return self.by_kind.get(kind)

    def with_kind(self, kind: str, target: Target | None) -> "EndpointSet":
        by_kind = dict(self.by_kind)
        if target is None:
            by_kind.pop(kind, None)
        else:
            by_kind[kind] = target
        return replace(self, by_kind=by_kind)

    def describe(self) -> dict[str, str]:
        described = {kind: str(target) for kind, target in sorted(self.by_kind.items())}
        if self.commit_listen is not None:
            described["commitment reports"] = f"listening as {self.commit_listen}"
        return described

    # -- snapshot ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "by_kind": {k: _target_json(k, t) for k, t in self.by_kind.items()},
            "named": {n: {"kind": k, **_target_json(k, t)} for n, (k, t) in self.named.items()},
            "builtin_worklist": self.builtin_worklist,
            "commit_listen": self.commit_listen.to_json() if self.commit_listen else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EndpointSet":
        return cls(
            by_kind={k: _target_from_json(k, v) for k, v in data.get("by_kind", {}).items()},
            named={n: (v["kind"], _target_from_json(v["kind"], v)) for n, v in data.get("named", {}).items()},
            builtin_worklist=bool(data.get("builtin_worklist", False)),
            commit_listen=CommitListen(**data["commit_listen"]) if data.get("commit_listen") else None,
        )


def _target_json(kind: str, target: Target) -> dict[str, Any]:
    if kind == "worklist_folder":
        return {"folder": str(target)}
    if kind == "hl7":
        t = target
        return {"host": t.host, "port": t.port, "receiving_application": t.receiving_application,
                "receiving_facility": t.receiving_facility, "version": t.version,
                "connect_timeout": t.connect_timeout, "timeout": t.timeout,
                "tls": t.tls.to_json() if t.tls else None}
    p = target
    settings = getattr(p, "tls_settings", None)
    return {"host": p.host, "port": p.port, "ae_title": p.ae_title, "calling_ae_title": p.calling_ae_title,
            "timeout": p.timeout, "tls": settings.to_json() if settings else None}


def _target_from_json(kind: str, data: dict[str, Any]) -> Target:
    if kind == "worklist_folder":
        return Path(data["folder"])
    values = {k: v for k, v in data.items() if k not in {"kind", "tls"}}
    tls = TlsSettings(**data["tls"]) if data.get("tls") else None
    if kind == "hl7":
        return HL7Target(**values, tls=tls)
    return EndpointPeer.build(values.pop("host"), values.pop("port"), values.pop("ae_title"), tls=tls, **values)


def target_for(endpoint) -> Target:
    """The transport target of an ``Endpoint`` row."""
    kind = endpoint.kind
    if kind == "worklist_folder":
        return Path(endpoint.folder)
    tls = TlsSettings(verify=endpoint.tls_verify, ca_file=endpoint.tls_ca_file) if endpoint.tls else None
    if kind == "hl7":
        return HL7Target(host=endpoint.host, port=endpoint.port,
                         receiving_application=endpoint.hl7_receiving_application or "RIS",
                         receiving_facility=endpoint.hl7_receiving_facility or "YEETER_HOSP",
                         version=endpoint.hl7_version, connect_timeout=endpoint.connect_timeout,
                         timeout=endpoint.timeout, tls=tls)
    return EndpointPeer.build(endpoint.host, endpoint.port, endpoint.ae_title,
                              calling_ae_title=endpoint.calling_ae_title, timeout=endpoint.timeout, tls=tls)


def endpoint_set_from_rows(endpoints, *, defaults=()) -> EndpointSet:
    """Named targets for every row, and a per-kind default from ``defaults`` (rows) when given; the
    default commitment row's listen address becomes the run's commitment listener."""
    named = {e.name: (e.kind, target_for(e)) for e in endpoints}
    by_kind: dict[str, Target] = {}
    listen: CommitListen | None = None
    for e in defaults:
        by_kind.setdefault(e.kind, target_for(e))
        named.setdefault(e.name, (e.kind, target_for(e)))
        if e.kind == "commitment" and e.listen_port and listen is None:
            listen = CommitListen(ae_title=e.calling_ae_title, host=e.listen_host or "0.0.0.0", port=e.listen_port)
    return EndpointSet(by_kind=by_kind, named=named, commit_listen=listen)
