"""``manage.py serve`` plays a RIS: runsim against it finds, on its worklist, the item its own order created."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.worklist import query_dataset
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.worklist import find_worklist
from tests.conftest import free_port, own_process_env
from tests.pacs.runs import events, runsim

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("hl7", "storage", "mwl", "mpps", "query")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A real ``serve`` subprocess with its own data folder and database, reporting storage commitment on a
    new association to YEETER at ``ports["commit"]`` as a PACS would; SIGINT in the finalizer."""
    ports = {kind: free_port() for kind in (*KINDS, "commit")}
    env = own_process_env(DJANGO_SETTINGS_MODULE="tests.settings", YEETER_DATA_DIR=str(tmp_path / "serve"))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    args = [sys.executable, "manage.py", "serve", "--station-aet", "*=MODALITY1", "--commit-reply", "new",
            "--commit-peer", f"YEETER={ports['commit']}"]
    for kind in KINDS:
        args += [f"--{kind}-port", str(ports[kind])]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                echo(DicomPeer("127.0.0.1", ports["mwl"], "YEETER_MWL", timeout=2))
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield ports
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "order(s) scheduled on the worklist" in stdout


def test_runsim_finds_the_worklist_item_its_order_created_and_mpps_takes_it_off(catalog_tx, serve, tmp_path) -> None:
    """The whole loop against serve: order -> worklist item -> C-FIND, MPPS, images, commitment on a new
    association to our listener, VERIFY_PACS through its query SCP."""
    p = serve
    result = runsim("--exam", "MR-KNEE-RIGHT-WO", "--patients", "2", "--seed", "401", "--max-instances", "1",
                    "--output", str(tmp_path / "run"), "--hl7", f"127.0.0.1:{p['hl7']}",
                    "--worklist", f"YEETER_MWL@127.0.0.1:{p['mwl']}", "--mpps", f"YEETER_MPPS@127.0.0.1:{p['mpps']}",
                    "--pacs", f"YEETER_PACS@127.0.0.1:{p['storage']}", "--query", f"YEETER_QR@127.0.0.1:{p['query']}",
                    "--verify-pacs", "--commit-listen", f"127.0.0.1:{p['commit']}")

    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["worklist_found"] == 2 and "received" not in result  # nothing built-in: serve did it all
    found = events(result["run_id"], "worklist.found")
    assert len(found) == 2
    assert len(events(result["run_id"], "pacs.verified")) == 2
    reports = events(result["run_id"], "commitment.result")
    assert len(reports) == 2 and not any(e.payload["same_association"] for e in reports)
    assert result["committed"] == result["instances_stored"] > 0
    # MPPS COMPLETED moved both items off serve's worklist
    mwl = DicomPeer("127.0.0.1", p["mwl"], "YEETER_MWL", timeout=10)
    for row in result["patient_rows"]:
        assert find_worklist(mwl, query_dataset(AccessionNumber=row["accession"])) == []
