"""What a user sees in the previews: a series' own window, the sunrise view, a three-plane MR scout, a sagittal head.

Each choice comes from a curated field of the series protocol (``window``, ``projection``) or from the plane
of the series, never from a word in its description.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from exams.catalog_io import SHIPPED_CATALOG, read_catalog_file
from generators.dicom import write_study
from generators.dicom.preview import TABLE_FROM_PIXELS, window_8bit
from generators.terms import (
    ContrastPhase,
    Laterality,
    Modality,
    Plane,
    Projection,
    SeriesRole,
    Weighting,
    WindowPreset,
)
from generators.types import SeriesSpec
from tests.conftest import require_binary
from tests.examples import EXAMS, FIXED_NOW, order_for


def _order(modality: Modality, *series: SeriesSpec, body_part: str, laterality: Laterality = Laterality.NONE):
    exam = dataclasses.replace(EXAMS[modality], series=series, body_part=body_part, laterality=laterality)
    return dataclasses.replace(order_for(modality), exam=exam)


def _series(result, number: int) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(result.study_dir.glob(f"{number:03d}_*.dcm"))]


def _ct(number: int, description: str, window: WindowPreset) -> SeriesSpec:
    return SeriesSpec(number, description, f"CHEST_{number}", 3, plane=Plane.AXIAL, slice_thickness_mm=3.0,
                      kvp=120, kernel="B30f", contrast_phase=ContrastPhase.NONE, window=window)


def test_the_ct_lung_series_is_windowed_and_previewed_as_lung_not_as_mediastinum(tmp_path: Path) -> None:
    # the same description: only the curated preset differs, so the window cannot come from a word in it
    order = _order(Modality.CT, _ct(1, "AX CHEST 3mm", WindowPreset.MEDIASTINUM),
                   _ct(2, "AX CHEST 3mm", WindowPreset.LUNG), body_part="CHEST")
    result = write_study(order, tmp_path, seed=3, now=FIXED_NOW, previews=True)
    med, lung = _series(result, 1)[0], _series(result, 2)[0]
    assert (float(med.WindowCenter[0]), float(med.WindowWidth[0])) == (40.0, 400.0)
    assert (float(lung.WindowCenter[0]), float(lung.WindowWidth[0])) == (-600.0, 1500.0)
    assert [float(v) for v in lung.WindowCenter] == [-600.0, 40.0]  # the other chest window stays offered
    previews = {r.number: np.asarray(Image.open(r.preview_path)) for r in result.series}
    # lung parenchyma (-850 HU) is black in the mediastinal window and mid-grey in the lung window
    ds = _series(result, 2)[1]
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])
    scale = previews[2].shape[0] / ds.Rows
    r, c = round((8 - ipp[1]) / ps * scale), round((-72 - ipp[0]) / ps * scale)  # the right lung's centre
    assert previews[1][r - 3:r + 3, c - 3:c + 3].mean() < 10
    assert 40 < previews[2][r - 3:r + 3, c - 3:c + 3].mean() < 140


def test_the_shipped_chest_ct_lung_and_bone_series_carry_their_window_preset() -> None:
    exams = {e["id"]: e for e in read_catalog_file(SHIPPED_CATALOG)["exams"]}
    windows = {s["description"]: s.get("window", "") for s in exams["CT-CHEST-WO"]["series"]}
    assert windows["AX LUNG 3mm"] == "lung" and windows["AX MEDIASTINUM 5mm"] == "mediastinum"
    assert {s.get("window") for s in exams["CT-HEAD-WO"]["series"] if "BONE" in s["description"]} == {"bone"}
    knee = {s["description"]: s.get("projection", "") for s in exams["DX-KNEE-RIGHT-3V"]["series"]}
    assert knee["SUNRISE"] == "axial_patellofemoral" and knee["AP"] == ""


def test_the_knee_sunrise_view_is_an_axial_patellofemoral_projection_unlike_the_ap(tmp_path: Path) -> None:
    ap = SeriesSpec(1, "VIEW A", "KNEE_AP", 1, view_position="AP", kvp=65, image_laterality=Laterality.RIGHT)
    sunrise = dataclasses.replace(ap, number=2, protocol_name="KNEE_SUNRISE",
                                  projection=Projection.AXIAL_PATELLOFEMORAL)
    order = _order(Modality.DX, ap, sunrise, body_part="KNEE", laterality=Laterality.RIGHT)
    result = write_study(order, tmp_path, seed=5, now=FIXED_NOW, previews=True)
    a, s = (_series(result, n)[0].pixel_array.astype(np.float32) for n in (1, 2))
    assert np.corrcoef(a.ravel(), s.ravel())[0, 1] < 0.5
    # AP: the bones run down the whole image (femur above, tibia below); sunrise: a closed ring of soft tissue
    # around the joint, air above and below it, and the patella (bright) above the femoral condyles
    rows = s.shape[0]
    assert s[:rows // 20].mean() < s[rows // 2 - 20:rows // 2 + 20].mean() - 300
    assert a[:rows // 20].mean() > s[:rows // 20].mean() + 300
    cols = s.shape[1]
    column = s[:, cols // 2 - 10:cols // 2 + 10].mean(axis=1)
    air = float(np.median(s[:rows // 20]))
    body = np.flatnonzero(column > air + 300)
    assert body.size and body[0] > rows // 10 and body[-1] < rows - rows // 10


def test_an_mr_localizer_yields_axial_sagittal_and_coronal_images(tmp_path: Path) -> None:
    loc = SeriesSpec(1, "3PL LOCALIZER", "BRAIN_LOC", 3, role=SeriesRole.LOCALIZER, sequence_name="GRE",
                     weighting=Weighting.LOCALIZER, slice_thickness_mm=8.0)
    result = write_study(_order(Modality.MR, loc, body_part="BRAIN"), tmp_path, seed=2, now=FIXED_NOW,
                         previews=True)
    images = _series(result, 1)
    orientations = [tuple(round(float(v)) for v in ds.ImageOrientationPatient) for ds in images]
    assert orientations == [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)]
    assert len({ds.SeriesInstanceUID for ds in images}) == 1
    assert all("LOCALIZER" in ds.ImageType for ds in images)
    # each image shows its own plane: the three differ, and the sagittal is taller than wide (face to occiput)
    px = [ds.pixel_array.astype(np.float32) for ds in images]
    assert np.corrcoef(px[0].ravel(), px[1].ravel())[0, 1] < 0.9
    assert np.corrcoef(px[1].ravel(), px[2].ravel())[0, 1] < 0.9
    binary = require_binary("dciodvfy")
    for path in sorted(result.study_dir.glob("*.dcm")):
        out = subprocess.run([binary, str(path)], capture_output=True, text=True, check=False)
        lines = (out.stdout + out.stderr).splitlines()
        assert [line for line in lines if line.startswith(("Error", "Warning"))] == [], path


def test_a_ct_head_sagittal_keeps_the_vault_over_the_brain_at_the_midline(tmp_path: Path) -> None:
    sag = SeriesSpec(1, "SAG BRAIN 3mm", "HEAD_SAG_MPR", 48, role=SeriesRole.REFORMAT, plane=Plane.SAGITTAL,
                     slice_thickness_mm=3.0, kvp=120, kernel="H30s", window=WindowPreset.BRAIN)
    result = write_study(_order(Modality.CT, sag, body_part="HEAD"), tmp_path, seed=1, now=FIXED_NOW,
                         max_instances_per_series=48)
    ds = _series(result, 1)[24]  # the middle slice, where an even count centres on x = 0 (the preview's)
    assert abs(float(ds.ImagePositionPatient[0])) < 0.5
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])
    col = round((0 - ipp[1]) / ps)  # y = 0: the vertex straight above the brain's centre
    profile = hu[:, col - 2:col + 3].mean(axis=1)
    z = ipp[2] - np.arange(ds.Rows) * ps
    vault = profile[(z > 692) & (z < 705)]
    assert vault.max() > 700, "the skull vault at the vertex"
    brain = profile[(z > 600) & (z < 680)]
    assert 15 < float(np.median(brain)) < 50, "brain, not a sheet of CSF, fills the midline"


def _windowed_by_arithmetic(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    lo = center - width / 2.0
    return np.clip((pixels.astype(np.float32) - lo) * (255.0 / max(width, 1.0)), 0, 255).astype(np.uint8)


def test_the_preview_window_table_gives_the_levels_of_the_window_arithmetic_for_every_stored_value() -> None:
    # every value each integer type holds, in a non-contiguous 2-D view (a strip's frames, a cropped image)
    # large enough to take the table
    cases = {
        np.int16: (np.arange(-32768, 32768).reshape(256, 256), [(40.0, 400.0), (-600.0, 1500.0), (0.0, 0.5)]),
        np.uint16: (np.arange(65536).reshape(256, 256), [(2048.0, 4096.0), (30000.0, 65535.0)]),
        np.uint8: (np.arange(256).reshape(16, 16), [(128.0, 256.0), (10.0, 3.0)]),
        np.int8: (np.arange(-128, 128).reshape(16, 16), [(0.0, 100.0)]),
    }
    for dtype, (values, windows) in cases.items():
        tiles = 2048 // values.shape[0]
        pixels = np.ascontiguousarray(np.repeat(np.tile(values.astype(dtype), (tiles, tiles)), 2, axis=1))[:, ::2]
        assert not pixels.flags.c_contiguous and pixels.size >= TABLE_FROM_PIXELS
        for center, width in windows:
            np.testing.assert_array_equal(window_8bit(pixels, center=center, width=width),
                                          _windowed_by_arithmetic(pixels, center, width), err_msg=f"{dtype} {center}/{width}")
    # other types (float, 32-bit, byte-swapped) take the arithmetic itself
    for pixels in (np.linspace(-2000, 3000, 400, dtype=np.float32).reshape(20, 20),
                   np.arange(-70000, 70000, 350, dtype=np.int32).reshape(20, 20),
                   np.arange(400, dtype=">u2").reshape(20, 20)):
        np.testing.assert_array_equal(window_8bit(pixels, center=100.0, width=300.0),
                                      _windowed_by_arithmetic(pixels, 100.0, 300.0))
