"""The Storage SCP's durable spool: direct writes against the page cache, side by side. Prints ONE JSON object.

Both contenders write ``--count`` files of ``--size`` bytes each the way the SCP does (the preamble and
File Meta first, then the data set in 16 KiB PDV fragments) and flush each before the next
(``YEETER_STORE_FSYNC``, the default): ``direct`` is :class:`~simulations.transport.dimse.spool.SpooledDataSet`
as it runs, ``page_cache`` the same class told to leave ``O_DIRECT`` at once (what it does on a file
system that refuses it). Rounds alternate the two; the best round of each is kept. ``ratio`` = direct
files/s ÷ page-cache files/s; ``cpu_ratio`` = page-cache CPU per file ÷ direct CPU per file.

    .venv/bin/python bench/spool.py [--count 300] [--size 547000] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulations.transport.dimse.spool import SpooledDataSet  # noqa: E402

PREFIX = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x00\x00\x00\x00"
FRAGMENT = 16_372  # a PDV of a 16 KiB PDU


def write_files(folder: Path, count: int, data: memoryview, *, direct: bool) -> tuple[float, float, bool]:
    """Seconds and CPU seconds to spool ``count`` files, and whether they went direct."""
    folder.mkdir(parents=True)
    went_direct = False
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        spooled = SpooledDataSet(folder / f"{i:05d}.part", PREFIX, durable=True)
        if spooled.direct and not direct:
            spooled._leave_direct()  # noqa: SLF001 - what a refusing file system makes it do
        went_direct = spooled.direct
        for at in range(0, len(data), FRAGMENT):
            spooled.add(data[at:at + FRAGMENT])
        spooled.finish()
        if spooled.error is not None:
            raise SystemExit(f"writing {spooled.path} failed: {spooled.error}")
    return time.perf_counter() - start, time.process_time() - cpu, went_direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=547_000, help="bytes per file (the day mix's mean instance)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    data = memoryview(random.Random(1).randbytes(args.size))
    root = Path(tempfile.mkdtemp(prefix="yeeter-spool-", dir=args.dir))
    best: dict[str, tuple[float, float]] = {}
    direct_used = False
    try:
        for r in range(args.rounds):
            for name in ("page_cache", "direct"):
                seconds, cpu, went = write_files(root / f"{name}{r}", args.count, data, direct=name == "direct")
                direct_used |= went and name == "direct"
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, cpu)
                shutil.rmtree(root / f"{name}{r}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def figures(name: str) -> dict:
        seconds, cpu = best[name]
        return {"files_per_s": round(args.count / seconds, 1), "ms_per_file": round(1000 * seconds / args.count, 2),
                "cpu_ms_per_file": round(1000 * cpu / args.count, 2)}

    result = {"count": args.count, "size": args.size, "rounds": args.rounds, "folder": str(root.parent),
              "o_direct": direct_used, "direct": figures("direct"), "page_cache": figures("page_cache"),
              "ratio": round(best["page_cache"][0] / best["direct"][0], 2),
              "cpu_ratio": round(best["page_cache"][1] / best["direct"][1], 2) if best["direct"][1] else None,
              "cpu_count": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
