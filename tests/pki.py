"""A throwaway PKI for TLS tests, made once per session with the openssl CLI: a test CA, a server
certificate for localhost/127.0.0.1 signed by it, one for another host name, and a second CA that
signed nothing we serve (an untrusted issuer)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA clients trust
    cert: Path  # server certificate for DNS:localhost, IP:127.0.0.1, signed by ``ca``
    key: Path
    elsewhere_cert: Path  # signed by ``ca`` but for DNS:elsewhere.invalid only
    elsewhere_key: Path
    other_ca: Path  # a CA that signed nothing we serve


def _openssl(binary: str, *args: str | Path) -> None:
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True, timeout=60)


def _make_ca(binary: str, folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        binary, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
        "-subj", f"/CN=Yeeter test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def _make_server(binary: str, folder: Path, name: str, ca: tuple[Path, Path], alt_names: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    _openssl(binary, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    ext.write_text(
        f"subjectAltName={alt_names}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        binary, "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )
    return cert, key


def make_pki(binary: str, folder: Path) -> Pki:
    ca = _make_ca(binary, folder, "ca")
    other_ca, _ = _make_ca(binary, folder, "other-ca")
    cert, key = _make_server(binary, folder, "localhost", ca, "IP:127.0.0.1,DNS:localhost")
    elsewhere_cert, elsewhere_key = _make_server(binary, folder, "elsewhere", ca, "DNS:elsewhere.invalid")
    return Pki(ca[0], cert, key, elsewhere_cert, elsewhere_key, other_ca)
