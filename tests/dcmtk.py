"""Short-lived dcmtk peers for interop tests (started with TCP_NODELAY=1, on a free port, 127.0.0.1 only).

dcmtk 3.6.7's storescp/wlmscpfs cannot bind to loopback only, so every peer lives for one test and
we only ever send to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simulations.transport.dimse.common import DicomPeer
from tests.conftest import free_port, require_binary

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def wait_listening(port: int, proc: subprocess.Popen, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port} within {seconds} s")


@contextmanager
def dcmtk_server(args: list[str], port: int) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(args, env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def storescp(out_dir: Path, *, ae_title: str = "STORESCP") -> Iterator[DicomPeer]:
    """dcmtk storescp writing bit-preserving (+B) files into ``out_dir``."""
    binary = require_binary("storescp")
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with dcmtk_server([binary, "--aetitle", ae_title, "+B", "-od", str(out_dir), str(port)], port):
        yield DicomPeer("127.0.0.1", port, ae_title)


@contextmanager
def wlmscpfs(root: Path, *, ae_title: str = "DCMTK_WL") -> Iterator[tuple[DicomPeer, Path]]:
    """dcmtk wlmscpfs serving ``root/<ae_title>/*.wl``; yields the peer and that folder."""
    binary = require_binary("wlmscpfs")
    folder = root / ae_title
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lockfile").touch()
    port = free_port()
    with dcmtk_server([binary, "--single-process", "-csk", "-dfp", str(root), str(port)], port):
        yield DicomPeer("127.0.0.1", port, ae_title), folder
