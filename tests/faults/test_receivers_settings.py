"""The receivers' limits come from the environment (``settings.RECEIVERS``) and reach ``manage.py serve``.

One real ``serve`` process started with non-default settings: ARTIM 1 s, duplicates rejected, only
HL7 v2.5.1 accepted; and a bad value stops start-up with a sentence naming the variable.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.store import send_instances
from simulations.transport.mllp import AckError, MllpClient
from tests.conftest import free_port, own_process_env
from tests.faults.test_receivers_limits import closed_by_server
from tests.transport.dicom_files import write_ct_series

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in own_process_env().items() if not k.startswith("YEETER_")}
    env.update({"DJANGO_SETTINGS_MODULE": "tests.settings", "YEETER_DATA_DIR": str(tmp_path), **extra})
    return env


def _wait_for(peer: DicomPeer, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            echo(DicomPeer(peer.host, peer.port, peer.ae_title, timeout=2))
            return
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)


def test_serve_applies_the_receiver_settings_from_the_environment(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("hl7", "storage", "mwl", "mpps", "query")}
    env = _env(tmp_path, YEETER_DICOM_ARTIM_TIMEOUT="1", YEETER_STORE_DUPLICATES="reject",
               YEETER_MLLP_VERSIONS="2.5.1")
    # serve ends orphaned runs at start-up (reap), so its database must exist
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--storage-dir", str(tmp_path / "received"),
         *(arg for kind, port in ports.items() for arg in (f"--{kind}-port", str(port)))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        storage = DicomPeer("127.0.0.1", ports["storage"], "YEETER_PACS")
        _wait_for(storage, proc)
        for kind in ("storage", "mpps"):
            with socket.create_connection(("127.0.0.1", ports[kind])) as idle:
                assert closed_by_server(idle, within=4), f"{kind} kept a silent connection past ARTIM 1 s"
        [path] = write_ct_series(tmp_path / "series", count=1)
        assert [send_instances(storage, [path])[0].status for _ in range(2)] == [0x0000, 0x0111]
        with MllpClient("127.0.0.1", ports["hl7"]) as client, pytest.raises(AckError) as refused:
            client.send("MSH|^~\\&|T|T|Y|Y|20261125093000||ADT^A04^ADT_A01|M1|P|2.3\r"
                        "PID|1||X1^^^H^MR||DOE^JANE||19800101|F\r")
        assert refused.value.ack.code == "AR"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [("YEETER_STORE_DUPLICATES", "overwrite", "YEETER_STORE_DUPLICATES must be one of keep-first, keep-last, reject"),
     ("YEETER_DICOM_ARTIM_TIMEOUT", "0", "YEETER_DICOM_ARTIM_TIMEOUT must be at least 1"),
     ("YEETER_MLLP_BUFFER_BUDGET", "2048", "YEETER_MLLP_BUFFER_BUDGET (2048) must be at least")],
)
def test_a_bad_receiver_setting_stops_start_up_with_a_sentence(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    done = subprocess.run([sys.executable, "-c", "import tests.settings"], cwd=ROOT,
                          env=_env(tmp_path, **{variable: value}), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert said in done.stderr
