"""Benchmark a whole simulation: the "Hospital day mix" scenario against the built-in receivers.

Runs in a fresh data directory (SQLite, in-memory channel layer: the embedded default) and prints one
JSON object: patients/minute, instances/s and MB/s of the run, the time split by step type (summed
over patients, so it shows where the work goes), and as a reference measured in the same run, the MB/s
of writing the same number of bytes raw to the same disk (``ratio`` = run MB/s ÷ raw MB/s; the run
writes every byte twice, once generated and once received, so 0.5 would be disk-bound), and the CPU
time the run took (``cpu_seconds``, this process and its pixel processes).

Arrivals keep the scenario's Poisson profile, sped up by ``--speed`` (default 10,000: the 50-patient
morning arrives within seconds) so that the figure is throughput, not the arrival rate.

    .venv/bin/python bench/simulate.py [--patients 50] [--seed 1] [--speed 10000] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def raw_write_mb_s(directory: Path, total_bytes: int, file_bytes: int = 512 * 1024) -> float:
    """MB/s of writing ``total_bytes`` as files of ``file_bytes`` with numpy (the reference)."""
    block = np.random.default_rng(0).integers(0, 4096, file_bytes // 2, dtype=np.uint16)
    count = max(1, total_bytes // file_bytes)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(count):
        block.tofile(directory / f"{i:06d}.raw")
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return count * file_bytes / 1e6 / elapsed


def _cpu_seconds() -> float:
    """User + system time of this process and of its children that have ended (the pixel pool's)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=10000.0)
    parser.add_argument("--scenario", default="Hospital day mix")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="yeeter-bench-"))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "yeeter.settings", "YEETER_DATA_DIR": str(data_dir),
                       "SECRET_KEY": "bench-only-" + "x" * 40})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    quiet = io.StringIO()
    call_command("migrate", verbosity=0, stdout=quiet)
    call_command("load_catalog", verbosity=0, stdout=quiet)
    call_command("load_scenarios", verbosity=0, stdout=quiet)
    out = io.StringIO()
    from django.core.management.base import CommandError

    before = _cpu_seconds()
    try:
        call_command("runsim", "--scenario", args.scenario, "--patients", str(args.patients), "--seed",
                     str(args.seed), "--speed", str(args.speed), "--json", stdout=out, stderr=quiet)
    except CommandError as exc:
        if not out.getvalue():
            raise SystemExit(f"runsim failed: {exc}") from None
    run_cpu = _cpu_seconds() - before
    summary = json.loads(out.getvalue())
    total_bytes = int(summary["megabytes"] * 1e6)
    raw = raw_write_mb_s(data_dir / "raw", total_bytes)
    result = {
        "scenario": args.scenario,
        "patients": summary["patients"],
        "passed": summary["passed"],
        "failed": summary["failed"],
        "instances": summary["instances_generated"],
        "megabytes": summary["megabytes"],
        "duration_s": summary["duration_s"],
        "patients_per_minute": summary["patients_per_minute"],
        "instances_per_second": summary["instances_per_second"],
        "megabytes_per_second": summary["megabytes_per_second"],
        "raw_write_mb_s": round(raw, 1),
        # CPU time of the run (this process and its pixel processes, user + system): steadier than the
        # duration on a shared machine, and what the two cores have to give
        "cpu_seconds": round(run_cpu, 1),
        "cpu_per_second": round(run_cpu / summary["duration_s"], 2) if summary["duration_s"] else None,
        "ratio": round(summary["megabytes_per_second"] / raw, 3) if raw else None,
        "step_seconds": summary["step_seconds"],
        "cpu_count": os.cpu_count(),
    }
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        result["data_dir"] = str(data_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
