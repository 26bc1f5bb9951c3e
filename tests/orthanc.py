"""A short-lived Orthanc (Debian ``orthanc``, 1.10) as a real PACS for interop tests.

Its configuration lives in a temporary folder: free DICOM and HTTP ports, storage and index in that
folder, REST on loopback only (``RemoteAccessAllowed`` false, no authentication), and YEETER
registered in ``DicomModalities`` at 127.0.0.1 and the port our commitment listener will use, so
Orthanc can open the association that carries its Storage Commitment report (PS3.4 J.3.3) and
answer our C-FIND. Orthanc binds every interface for DICOM: keep it short-lived, send to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulations.transport.dimse.common import DicomPeer
from tests.conftest import free_port, require_binary

ORTHANC_AET = "ORTHANC"


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its DICOM peer, its REST base URL, and the port YEETER is registered at."""

    peer: DicomPeer
    http_port: int
    commit_port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def delete(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}{path}", method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def clear(self) -> None:
        """Delete every patient (each test starts from an empty archive)."""
        for patient in self.get("/patients"):
            self.delete(f"/patients/{patient}")

    def log(self) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_ready(url: str, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode} before answering /system")
        try:
            with urllib.request.urlopen(f"{url}/system", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not answer {url}/system within {seconds} s")


def _plugin(name: str) -> str:
    path = Path("/usr/share/orthanc/plugins") / name
    if not path.exists():
        from tests.conftest import missing_peer

        missing_peer(f"the Orthanc plugin {path} is not installed (Debian packages orthanc, orthanc-dicomweb)")
    return str(path)


@contextmanager
def orthanc(folder: Path, *, calling_ae_title: str = "YEETER", commit_port: int | None = None,
            worklists: Path | None = None, dicomweb: bool = False) -> Iterator[Orthanc]:
    """Start Orthanc with its configuration in ``folder``; killed (SIGTERM, then SIGKILL) on exit.

    ``worklists``: a folder of ``.wl`` files its Modality Worklists plugin serves; ``dicomweb``: its
    DICOMweb plugin at ``/dicom-web`` (Debian ships both).
    """
    binary = require_binary("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    commit_port = commit_port or free_port()
    config = {
        "Name": "yeeter-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "HttpServerEnabled": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomCheckCalledAet": False,
        "DefaultEncoding": "Utf8",
        "DicomScuTimeout": 10,
        "DicomModalities": {
            "yeeter": {"AET": calling_ae_title, "Host": "127.0.0.1", "Port": commit_port,
                       "AllowStorageCommitment": True, "AllowFind": True, "AllowEcho": True, "AllowStore": True},
        },
        "Plugins": [],
        "ConcurrentJobs": 2,
        "StableAge": 1,
        "SaveJobs": False,
    }
    plugins = []
    if worklists is not None:
        plugins.append(_plugin("libModalityWorklists.so"))
        config["Worklists"] = {"Enable": True, "Database": str(worklists)}
    if dicomweb:
        plugins.append(_plugin("libOrthancDicomWeb.so"))
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    config["Plugins"] = plugins
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=1))
    env = {**os.environ, "TCP_NODELAY": "1"}
    with open(folder / "orthanc.stdout", "wb") as out:
        proc = subprocess.Popen([binary, f"--logfile={folder / 'orthanc.log'}", str(config_path)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{http_port}", proc)
        yield Orthanc(DicomPeer("127.0.0.1", dicom_port, ORTHANC_AET, calling_ae_title=calling_ae_title),
                      http_port, commit_port, folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
