"""C-STORE throughput against dcmtk, over loopback: prints ONE JSON object.

* ``ratio``: our C-STORE SCU (``send_instances``) ÷ dcmtk ``storescu``, both sending the same
  300-instance 512×512 CT series to dcmtk ``storescp +B`` (bit-preserving, one process).
* ``scp_ratio``: dcmtk ``storescu`` sending to our ``StorageScp`` ÷ sending to ``storescp``.
* ``ours_to_ours`` (information only): our SCU sending to our SCP.

Each measurement is repeated ``--rounds`` times, alternating the contenders, and the best
round is kept (the machine is shared; the best round is the least disturbed one). Usage::

    .venv/bin/python bench/cstore.py [--count 300] [--rounds 3] [--associations 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.transport.dimse.common import DicomPeer  # noqa: E402
from simulations.transport.dimse.storage_scp import StorageScp  # noqa: E402
from simulations.transport.dimse.store import send_instances  # noqa: E402
from tests.transport.dicom_files import write_ct_series  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def empty(directory: Path) -> None:
    for entry in directory.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def storescu(port: int, aet: str, source: Path) -> None:
    subprocess.run(
        ["storescu", "-aec", aet, "127.0.0.1", str(port), "+sd", str(source)],
        check=True, env=DCMTK_ENV, stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=1)
    args = parser.parse_args()
    for binary in ("storescp", "storescu"):
        if shutil.which(binary) is None:
            print(json.dumps({"error": f"{binary} not installed (Debian package dcmtk)"}))
            return

    work = Path(tempfile.mkdtemp(prefix="bench-cstore-"))
    try:
        series = work / "series"
        files = write_ct_series(series, count=args.count, rows=512, columns=512, seed=42)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        received = work / "dcmtk"
        received.mkdir()
        ours_dir = work / "ours"
        port = free_port()
        storescp = subprocess.Popen(
            ["storescp", "-aet", "STORESCP", "-od", str(received), "+B", str(port)],
            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        scp = StorageScp(storage_dir=ours_dir, ae_title="YEETER_SCP")
        scp.start()
        try:
            wait_listening(port)
            peer = DicomPeer("127.0.0.1", port, "STORESCP")
            # Warm-up: page cache, both programs loaded once.
            send_instances(peer, files[:5])
            empty(received)
            best = {key: float("inf") for key in ("ours", "storescu", "storescu_to_ours", "ours_to_ours")}

            def run_ours(target: DicomPeer = peer) -> None:
                results = send_instances(target, files, associations=args.associations)
                bad = [r for r in results if r.status != 0]
                if bad:
                    raise RuntimeError(f"{len(bad)} instances failed: {bad[0].message}")

            for _ in range(args.rounds):
                best["ours"] = min(best["ours"], timed(run_ours))
                empty(received)
                best["storescu"] = min(best["storescu"], timed(lambda: storescu(port, "STORESCP", series)))
                empty(received)
                best["storescu_to_ours"] = min(
                    best["storescu_to_ours"], timed(lambda: storescu(scp.port, "YEETER_SCP", series))
                )
                if len(list(ours_dir.rglob("*.dcm"))) != args.count:
                    raise RuntimeError("our Storage SCP did not store every instance")
                empty(ours_dir)
                best["ours_to_ours"] = min(best["ours_to_ours"], timed(lambda: run_ours(scp.peer)))
                empty(ours_dir)
        finally:
            scp.stop()
            storescp.terminate()
            storescp.wait(timeout=10)

        def figures(seconds: float) -> dict[str, float]:
            return {
                "seconds": round(seconds, 3),
                "instances_per_s": round(args.count / seconds, 1),
                "mb_per_s": round(megabytes / seconds, 1),
            }

        print(json.dumps({
            "instances": args.count,
            "megabytes": round(megabytes, 1),
            "rounds": args.rounds,
            "associations": args.associations,
            "ours_to_storescp": figures(best["ours"]),
            "storescu_to_storescp": figures(best["storescu"]),
            "storescu_to_ours": figures(best["storescu_to_ours"]),
            "ours_to_ours": figures(best["ours_to_ours"]),
            "ratio": round(best["storescu"] / best["ours"], 2),
            "scp_ratio": round(best["storescu"] / best["storescu_to_ours"], 2),
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
