"""Synthetic anatomy that a reader would accept: HU ranges, MR contrast, US/MG/NM/DX traits, bounded memory."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from generators.dicom import iter_study, write_study
from generators.terms import Laterality, Modality, Plane, Weighting
from generators.types import SeriesSpec
from tests.examples import EXAMS, FIXED_NOW, order_for


def _read(result, series: int) -> list[pydicom.Dataset]:
    files = sorted(result.study_dir.glob(f"{series:03d}_*.dcm"))
    return [pydicom.dcmread(p) for p in files]


def _pixel_of(ds: pydicom.Dataset, x: float, y: float) -> tuple[int, int]:
    """(row, column) of patient point (x, y) on an axial slice."""
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ps = float(ds.PixelSpacing[0])
    return round((y - ipp[1]) / ps), round((x - ipp[0]) / ps)


def _with_series(modality: Modality, *series: SeriesSpec, body_part: str | None = None):
    exam = dataclasses.replace(EXAMS[modality], series=series, body_part=body_part or EXAMS[modality].body_part,
                               laterality=Laterality.NONE if body_part else EXAMS[modality].laterality)
    return dataclasses.replace(order_for(modality), exam=exam)


def test_ct_shows_air_outside_the_body_and_bone_in_the_spine(tmp_path: Path) -> None:
    result = write_study(order_for(Modality.CT), tmp_path, seed=4, now=FIXED_NOW)
    slices = _read(result, 2)  # AX PORTAL VENOUS 5mm
    spine_max = -2000.0
    for ds in slices:
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        for corner in (hu[:20, :20], hu[:20, -20:], hu[-20:, :20], hu[-20:, -20:]):
            assert corner.max() < -900
        r, c = _pixel_of(ds, 0.0, 55.0)  # vertebral body: midline, posterior of the aorta
        spine_max = max(spine_max, float(hu[r - 25:r + 25, c - 25:c + 25].max()))
        soft = ((hu > -150) & (hu < 150)).mean()
        assert soft > 0.2  # mostly fat and soft tissue inside a large body outline
    assert spine_max > 300


def test_mr_fluid_is_dark_on_t1_and_bright_on_t2(tmp_path: Path) -> None:
    order = _with_series(
        Modality.MR,
        SeriesSpec(1, "AX T1", "BRAIN_T1", 5, plane=Plane.AXIAL, sequence_name="SE", weighting=Weighting.T1,
                   slice_thickness_mm=4.0),
        SeriesSpec(2, "AX T2", "BRAIN_T2", 5, plane=Plane.AXIAL, sequence_name="TSE", weighting=Weighting.T2,
                   slice_thickness_mm=4.0),
        body_part="BRAIN")
    result = write_study(order, tmp_path, seed=4, now=FIXED_NOW)
    ratio = {}
    for series in (1, 2):
        ds = max(_read(result, series), key=lambda d: float(d.SliceLocation))  # the slice through the ventricles
        img = ds.pixel_array.astype(np.float32)
        r, c = _pixel_of(ds, -10.0, -5.0)  # lateral ventricle (CSF)
        rw, cw = _pixel_of(ds, -38.0, 10.0)  # white matter
        ratio[series] = img[r - 2:r + 3, c - 1:c + 2].mean() / img[rw - 2:rw + 3, cw - 2:cw + 3].mean()
    assert ratio[1] < 0.5 < 1.5 < ratio[2]


def test_fat_saturation_darkens_fat_on_the_same_weighting(tmp_path: Path) -> None:
    order = _with_series(
        Modality.MR,
        SeriesSpec(1, "AX T2", "K_T2", 1, plane=Plane.AXIAL, sequence_name="TSE", weighting=Weighting.T2),
        SeriesSpec(2, "AX T2 FS", "K_T2FS", 1, plane=Plane.AXIAL, sequence_name="TSE", weighting=Weighting.T2,
                   fat_sat=True),
        body_part="ABDOMEN")
    result = write_study(order, tmp_path, seed=4, now=FIXED_NOW)
    fat = []
    for series in (1, 2):
        ds = _read(result, series)[0]
        r, c = _pixel_of(ds, 0.0, -118.0)  # anterior subcutaneous fat
        fat.append(ds.pixel_array[r - 2:r + 3, c - 3:c + 4].mean())
    assert fat[1] < 0.3 * fat[0]


def test_ultrasound_is_8_bit_with_a_black_outside_of_the_sector(tmp_path: Path) -> None:
    result = write_study(order_for(Modality.US), tmp_path, seed=4, now=FIXED_NOW, max_instances_per_series=2)
    for ds in _read(result, 1):
        img = ds.pixel_array
        assert ds.BitsAllocated == 8 and img.dtype == np.uint8 and (ds.Rows, ds.Columns) == (480, 640)
        assert img[:60, :80].max() == 0 and img[:60, -80:].max() == 0
        assert img[200:300, 280:360].mean() > 20
        speckle = img[200:300, 280:360].astype(np.float32)
        assert speckle.std() / speckle.mean() > 0.3  # Rayleigh speckle, not a flat fill


def test_mammography_puts_the_chest_wall_on_the_side_of_the_breast(tmp_path: Path) -> None:
    result = write_study(order_for(Modality.MG), tmp_path, seed=4, now=FIXED_NOW)
    for series in (1, 2, 3, 4):
        ds = _read(result, series)[0]
        img = ds.pixel_array.astype(np.float32)
        cols = np.arange(img.shape[1])
        centroid = (img.sum(axis=0) * cols).sum() / img.sum()
        chest_wall_right = centroid > img.shape[1] / 2
        assert chest_wall_right == (ds.ImageLaterality == "R")
        assert ds.PatientOrientation[0] == ("P" if ds.ImageLaterality == "R" else "A")


def test_chest_radiograph_has_lungs_darker_than_the_mediastinum(tmp_path: Path) -> None:
    order = _with_series(Modality.DX, EXAMS[Modality.DX].series[0])
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[0]
    img = ds.pixel_array.astype(np.float32)
    mid, ps = img.shape[0] // 2, float(ds.ImagerPixelSpacing[0])
    lung = [img[mid - 60:mid - 20, round(img.shape[1] / 2 + s * 75 / ps) - 20:][:, :40].mean() for s in (-1, 1)]
    mediastinum = img[mid - 60:mid - 20, img.shape[1] // 2 - 20:img.shape[1] // 2 + 20].mean()
    assert max(lung) < 0.8 * mediastinum
    assert ds.WindowCenter and ds.WindowWidth


def test_bone_scan_has_low_poisson_counts_and_distinct_views(tmp_path: Path) -> None:
    result = write_study(order_for(Modality.NM), tmp_path, seed=4, now=FIXED_NOW)
    anterior, posterior = (ds.pixel_array for ds in _read(result, 1))
    assert anterior.shape == (1024, 256) and anterior.max() < 1000
    assert (anterior == 0).mean() > 0.2  # background outside the body
    assert not np.array_equal(anterior, posterior)


@pytest.mark.slow
def test_streaming_a_long_series_does_not_hold_it_in_memory(tmp_path: Path) -> None:
    def peak(count: int, name: str) -> tuple[int, int]:
        order = _with_series(Modality.CT, SeriesSpec(1, "AX 1mm", "LONG", count, plane=Plane.AXIAL,
                                                     slice_thickness_mm=1.0), body_part="PELVIS")
        tracemalloc.start()
        try:
            size = sum(r.size for r in iter_study(order, tmp_path / name, seed=9, now=FIXED_NOW, previews=False))
            return tracemalloc.get_traced_memory()[1], size
        finally:
            tracemalloc.stop()

    short_peak, _ = peak(100, "short")
    long_peak, long_size = peak(400, "long")
    assert long_size > 400 * 512 * 512 * 2
    assert long_peak < long_size / 3
    assert long_peak < 1.5 * short_peak + 8_000_000  # not growing with the slice count
