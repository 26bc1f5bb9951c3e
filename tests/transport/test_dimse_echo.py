"""C-ECHO (PS3.7 §9.1.5) against dcmtk and against our own Storage SCP, plus association failures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.errors import SendError
from tests.conftest import free_port, require_binary
from tests.transport.dicom_files import storescp


@pytest.fixture
def our_scp(tmp_path: Path) -> Iterator[StorageScp]:
    scp = StorageScp(storage_dir=tmp_path / "store")
    scp.start()
    yield scp
    scp.stop()


@pytest.mark.interop
def test_it_echoes_dcmtk_storescp_and_returns_the_round_trip(tmp_path: Path) -> None:
    binary = require_binary("storescp")
    port = free_port()
    with storescp(binary, tmp_path / "in", port):
        latency = echo(DicomPeer("127.0.0.1", port, "STORESCP"))
    # with TCP_NODELAY on both sides a loopback echo is far below the 40 ms delayed-ACK stall
    assert 0 < latency < 0.04


@pytest.mark.interop
def test_dcmtk_echoscu_gets_success_from_our_storage_scp(our_scp: StorageScp) -> None:
    binary = require_binary("echoscu")
    done = subprocess.run(
        [binary, "-v", "-aec", our_scp.ae_title, "127.0.0.1", str(our_scp.port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert "Received Echo Response (Success)" in done.stderr + done.stdout


def test_our_echo_reaches_our_storage_scp(our_scp: StorageScp) -> None:
    assert echo(our_scp.peer) < 1.0


def test_it_raises_a_transient_send_error_when_nobody_listens() -> None:
    with pytest.raises(SendError) as caught:
        echo(DicomPeer("127.0.0.1", free_port(), "NOBODY", timeout=3))
    assert caught.value.permanent is False
    assert "NOBODY@127.0.0.1" in caught.value.message


def test_it_raises_a_permanent_send_error_when_the_called_ae_title_is_rejected() -> None:
    ae = AE(ae_title="PICKY")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.server_address[1]
        with pytest.raises(SendError) as caught:
            echo(DicomPeer("127.0.0.1", port, "SOMEONE_ELSE", timeout=5))
    finally:
        server.shutdown()
    assert caught.value.permanent is True
    assert "called AE title not recognised" in caught.value.message
