"""Benchmark DICOM study generation against raw disk writes; prints one JSON object.

Measures instances/s and MB/s for a CT series (default 300 slices of 512×512, pixels included), a
20-series MR study, a PET/CT study (224 CT-AC + 374 PET slices) and a 200-frame XA run (one multi-frame instance), the MB/s of writing the same bytes raw with numpy to the same directory in the
same run, and ``ratio`` = CT generation MB/s ÷ raw MB/s (best run of each; ``ratio_per_run`` pairs each
CT run with the raw write right after it). The ``cold`` run includes computing the anatomy; later runs
re-use the per-process anatomy cache as a second order of the same exam does.

    .venv/bin/python bench/generate.py [--slices 300] [--out DIR] [--repeat 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.dicom import write_study  # noqa: E402
from generators.identity import mint_order  # noqa: E402
from generators.terms import CodingScheme, Laterality, Modality, Plane, Sex, Weighting  # noqa: E402
from generators.types import (  # noqa: E402
    Address, Code, ExamInfo, Indication, Order, Patient, PersonName, SeriesSpec,
)

NOW = dt.datetime(2026, 11, 25, 9, 30)
PATIENT = Patient("MRN0000001", "YEETER_HOSP", PersonName("BENCH", "MARK"), dt.date(1970, 1, 2), Sex.MALE, 56,
                  "900-00-0001", Address("1 Main St", "Springfield", "IL", "62701"), "(217) 555-0100")


def _order(exam: ExamInfo, seed: int) -> Order:
    return mint_order(exam=exam, patient=PATIENT, indication=Indication("Abdominal pain", "R10.9"),
                      rng=random.Random(seed), now=NOW)


def ct_exam(slices: int) -> ExamInfo:
    return ExamInfo(
        id="BENCH-CT", name="CT Abdomen Pelvis", description="CT ABDOMEN PELVIS WO CONTRAST", modality=Modality.CT,
        body_part="ABDOMENPELVIS", laterality=Laterality.NONE,
        codes=(Code("74176", CodingScheme.CPT, "CT abdomen and pelvis without contrast"),),
        series=(SeriesSpec(1, "AX 1mm", "BENCH_AX", slices, plane=Plane.AXIAL, slice_thickness_mm=1.0, kvp=120,
                           kernel="B30f"),),
    )


def mr_exam() -> ExamInfo:
    weightings = [Weighting.T1, Weighting.T2, Weighting.FLAIR, Weighting.PD, Weighting.DWI]
    planes = [Plane.AXIAL, Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL]
    series = tuple(
        SeriesSpec(n + 1, f"{planes[n % 4].value} {weightings[n % 5].value}", f"BRAIN_{n + 1}", 24,
                   plane=planes[n % 4], sequence_name="TSE", weighting=weightings[n % 5], fat_sat=n % 3 == 0,
                   slice_thickness_mm=5.0)
        for n in range(20))
    return ExamInfo(id="BENCH-MR", name="MRI Brain", description="MRI BRAIN WO CONTRAST", modality=Modality.MR,
                    body_part="BRAIN", laterality=Laterality.NONE,
                    codes=(Code("70551", CodingScheme.CPT, "MRI brain without contrast"),), series=series)


def pet_exam() -> ExamInfo:
    """PET/CT FDG skull base to mid-thigh as the catalog ships it: 224 CT-AC slices (512²) + 374 PET slices (192²)."""
    series = (SeriesSpec(1, "CT AC LOW DOSE 5MM", "PETCT_CTAC_LD", 224, plane=Plane.AXIAL, slice_thickness_mm=5.0,
                         kvp=120, kernel="B19f"),
              SeriesSpec(2, "PET WB AC 3D OSEM", "PETCT_PET_WB", 374, plane=Plane.AXIAL, slice_thickness_mm=3.0))
    return ExamInfo(id="PT-WHOLEBODY-FDG", name="PET/CT FDG skull base to mid-thigh",
                    description="PET CT FDG SKULL BASE TO MID THIGH", modality=Modality.PT, body_part="WHOLEBODY",
                    laterality=Laterality.NONE,
                    codes=(Code("78815", CodingScheme.CPT, "PET with concurrently acquired CT; skull base to mid-thigh"),),
                    series=series)


def xa_exam(frames: int) -> ExamInfo:
    """One cerebral DSA run of ``frames`` 512×512 8-bit frames in one multi-frame XA instance (PS3.3 A.14)."""
    return ExamInfo(id="BENCH-XA", name="XA Cerebral angiography", description="XA ANGIO CEREBRAL",
                    modality=Modality.XA, body_part="HEAD", laterality=Laterality.NONE,
                    codes=(Code("36224", CodingScheme.CPT, "Selective catheter ICA, intracranial angiography"),),
                    series=(SeriesSpec(1, "ICA DSA AP", "DSA_ICA_AP", 1, view_position="AP", frames=frames),))


def _timed_study(order: Order, out: Path, seed: int) -> dict[str, float]:
    start = time.perf_counter()
    result = write_study(order, out, seed=seed, now=NOW)
    seconds = time.perf_counter() - start
    return {"instances": result.instance_count, "bytes": result.bytes, "seconds": round(seconds, 4),
            "instances_per_s": round(result.instance_count / seconds, 1),
            "mb_per_s": round(result.bytes / seconds / 1e6, 1)}


def _raw(out: Path, count: int, nbytes: int) -> dict[str, float]:
    """Write ``count`` files of ``nbytes`` each straight from a numpy array (the disk's ceiling)."""
    arr = np.random.default_rng(0).integers(0, 4096, nbytes // 2, dtype=np.int16)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(count):
        arr.tofile(out / f"raw_{i:04d}.bin")
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 4), "mb_per_s": round(count * arr.nbytes / seconds / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices of the CT series (512×512)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a temp dir, removed)")
    parser.add_argument("--frames", type=int, default=200, help="frames of the XA run (512×512, 8-bit)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (first is cold)")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="yeeter-bench-"))
    try:
        ct_runs, mr_runs, pet_runs, raw_runs, xa_runs = [], [], [], [], []
        # Warm the file system up (allocation, page cache) so the first measured run is not penalised.
        _raw(base / "warmup", 100, 512 * 512 * 2)
        shutil.rmtree(base / "warmup", ignore_errors=True)
        for run in range(args.repeat):
            ct = _timed_study(_order(ct_exam(args.slices), 1000 + run), base / f"ct{run}", seed=run)
            ct_runs.append(ct)
            raw_runs.append(_raw(base / f"raw{run}", ct["instances"], ct["bytes"] // ct["instances"]))
            mr_runs.append(_timed_study(_order(mr_exam(), 2000 + run), base / f"mr{run}", seed=run))
            pet_runs.append(_timed_study(_order(pet_exam(), 3000 + run), base / f"pet{run}", seed=run))
            shutil.rmtree(base / f"pet{run}", ignore_errors=True)
            shutil.rmtree(base / f"ct{run}", ignore_errors=True)
            shutil.rmtree(base / f"raw{run}", ignore_errors=True)
            shutil.rmtree(base / f"mr{run}", ignore_errors=True)
            xa_runs.append(_timed_study(_order(xa_exam(args.frames), 3000 + run), base / f"xa{run}", seed=run))
            shutil.rmtree(base / f"xa{run}", ignore_errors=True)
        best_ct = max(ct_runs, key=lambda r: r["mb_per_s"])
        best_raw = max(raw_runs, key=lambda r: r["mb_per_s"])
        print(json.dumps({
            "ct_series": {"slices": args.slices, "matrix": 512, "cold": ct_runs[0], "best": best_ct},
            "mr_study": {"series": 20, "cold": mr_runs[0], "best": max(mr_runs, key=lambda r: r["mb_per_s"])},
            "pet_ct_study": {"series": 2, "cold": pet_runs[0],
                             "best": max(pet_runs, key=lambda r: r["instances_per_s"])},
            "xa_run": {"frames": args.frames, "matrix": 512, "cold": xa_runs[0],
                       "best": max(xa_runs, key=lambda r: r["mb_per_s"]),
                       "frames_per_s": round(args.frames / min(r["seconds"] for r in xa_runs), 1)},
            "raw": {"best": best_raw, "runs": raw_runs},
            "ratio": round(best_ct["mb_per_s"] / best_raw["mb_per_s"], 3),
            "ratio_cold": round(ct_runs[0]["mb_per_s"] / raw_runs[0]["mb_per_s"], 3),
            "ratio_per_run": [round(c["mb_per_s"] / r["mb_per_s"], 3) for c, r in zip(ct_runs, raw_runs, strict=True)],
        }))
    finally:
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
