"""`manage.py serve`: the built-in receivers for external tools, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.mllp import MllpClient
from tests.conftest import free_port, own_process_env, require_binary
from tests.dcmtk import DCMTK_ENV

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_serve_answers_mllp_and_dicom_until_interrupted(tmp_path):
    ports = {name: free_port() for name in ("hl7", "storage", "mwl", "mpps", "query")}
    env = own_process_env(DJANGO_SETTINGS_MODULE="tests.settings", YEETER_DATA_DIR=str(tmp_path))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--hl7-port", str(ports["hl7"]), "--storage-port",
         str(ports["storage"]), "--mwl-port", str(ports["mwl"]), "--mpps-port", str(ports["mpps"]),
         "--query-port", str(ports["query"])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                echo(DicomPeer("127.0.0.1", ports["storage"], "YEETER_PACS", timeout=2))
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        for kind, aet in (("mwl", "YEETER_MWL"), ("mpps", "YEETER_MPPS")):
            assert echo(DicomPeer("127.0.0.1", ports[kind], aet, timeout=5)) < 5
        message = ("MSH|^~\\&|TEST|T|YEETER|Y|20261125093000||ADT^A04^ADT_A01|M1|P|2.5.1\r"
                   "PID|1||X1^^^H^MR||DOE^JANE||19800101|F\r")
        with MllpClient("127.0.0.1", ports["hl7"]) as client:
            assert client.send(message).code == "AA"
        echoscu = require_binary("echoscu")
        out = subprocess.run([echoscu, "-aec", "YEETER_PACS", "127.0.0.1", str(ports["storage"])],
                             env=DCMTK_ENV, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"HL7 MLLP listener      127.0.0.1:{ports['hl7']}" in stdout
    assert "Receivers stopped." in stdout
    assert "Traceback" not in stderr
