"""Synthetic anatomy that a reader would accept: HU ranges, MR contrast, US/MG/NM/DX traits, bounded memory."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from generators.dicom import iter_study, phantoms_nm, phantoms_us, write_study
from generators.terms import Laterality, Modality, Plane, Scene, Weighting
from generators.types import SeriesSpec
from tests.conftest import require_binary
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


def _box(img: np.ndarray, r: int, c: int, half: int = 4) -> float:
    return float(img[r - half:r + half + 1, c - half:c + half + 1].astype(np.float32).mean())


def _peaks(profile: np.ndarray, rise: float) -> int:
    """Local maxima standing ``rise`` above the lowest point on both sides before the next higher peak."""
    count, low, high, climbing = 0, profile[0], profile[0], False
    for v in profile[1:]:
        if climbing:
            high = max(high, v)
            if v < high - rise:
                count, climbing, low = count + 1, False, v
        else:
            low = min(low, v)
            if v > low + rise:
                climbing, high = True, v
    return count


def test_ultrasound_kidney_has_a_bright_central_sinus_inside_a_darker_cortex(tmp_path: Path) -> None:
    order = _with_series(Modality.US, SeriesSpec(1, "RIGHT KIDNEY", "US_K", 2, scene=Scene.KIDNEY), body_part="KIDNEY")
    frames = [ds.pixel_array.astype(np.float32) for ds in _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)]
    img = np.mean(frames, axis=0)
    probe = phantoms_us.probe_for("kidney")
    tilt = math.radians(12)  # the kidney's long axis in the scene

    def at(d: float) -> float:  # mean echo d mm along the kidney's long axis from its centre (0, 92 mm)
        return _box(img, *phantoms_us.probe_to_pixel(probe, 480, 640, d * math.cos(tilt), 92 + d * math.sin(tilt)))

    sinus, cortex, perirenal_fat = min(at(-20), at(20)), max(at(-44), at(44)), at(58)
    assert sinus > 2.5 * cortex
    assert perirenal_fat > 1.8 * cortex  # the darker cortex is an oval outlined by bright fat


def test_ultrasound_scenes_differ_and_linear_probes_fill_a_rectangle(tmp_path: Path) -> None:
    images = {}
    for part, scene in (("KIDNEY", Scene.KIDNEY), ("THYROID", Scene.THYROID), ("GALLBLADDER", Scene.GALLBLADDER)):
        order = _with_series(Modality.US, SeriesSpec(1, "SWEEP", "US_X", 1, scene=scene), body_part=part)
        ds = _read(write_study(order, tmp_path / part, seed=4, now=FIXED_NOW), 1)[0]
        images[part] = ds.pixel_array.astype(np.float32)
        assert ds.BitsAllocated == 8 and images[part][:150, :60].max() == 0  # black beside the field
    thyroid = images["THYROID"]
    assert thyroid[20:40, 100:540].mean() > 20  # a linear array images right up to its face, corner to corner
    assert images["KIDNEY"][20:40, 100:140].max() == 0  # a convex probe's fan leaves the top corners black
    assert abs(images["KIDNEY"] - images["GALLBLADDER"]).mean() > 10
    # gallbladder: an anechoic lumen, with brighter (enhanced) liver behind it than beside it
    probe = phantoms_us.probe_for("gallbladder")
    lumen = _box(images["GALLBLADDER"], *phantoms_us.probe_to_pixel(probe, 480, 640, 0, 78))
    behind = _box(images["GALLBLADDER"], *phantoms_us.probe_to_pixel(probe, 480, 640, 0, 112), 8)
    beside = _box(images["GALLBLADDER"], *phantoms_us.probe_to_pixel(probe, 480, 640, 60, 112), 8)
    assert lumen < 0.2 * behind and behind > 1.3 * beside


def test_nm_heart_spect_shows_myocardial_rings_with_cold_cavities(tmp_path: Path) -> None:
    order = _with_series(Modality.NM, SeriesSpec(1, "REST SPECT", "NM_H", 1, scene=Scene.HEART), body_part="HEART")
    img = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[0].pixel_array.astype(np.float32)
    assert img.shape == (256, 256)
    for tile_row, tile_col in ((1, 1), (1, 3)):  # two basal short-axis slices of the montage
        cy, cx = tile_row * 64 + 31.5, tile_col * 64 + 31.5
        yy, xx = np.mgrid[0:256, 0:256]
        r = np.hypot(yy - cy, xx - cx)
        wall, cavity = img[(r > 13) & (r < 17)].mean(), img[r < 5].mean()
        assert cavity < 0.25 * wall and wall > 50
    assert (img[img > 0] > 0).all() and np.array_equal(img, np.round(img))  # integer counts


def test_nm_lung_perfusion_has_two_hot_lungs_around_a_cold_mediastinum(tmp_path: Path) -> None:
    order = _with_series(Modality.NM, SeriesSpec(1, "PERFUSION 8 VIEWS", "NM_Q", 2, scene=Scene.VQ_PERF),
                         body_part="CHEST")
    for ds in _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1):
        img = ds.pixel_array.astype(np.float32)
        band = img[90:110].mean(axis=0)  # above the heart: the lungs either side of the mediastinum
        right, left, middle = band[85:110].mean(), band[147:172].mean(), band[124:133].mean()
        assert min(right, left) > 3 * middle
        assert band[:40].mean() < 0.1 * right  # background outside the chest


def test_nm_studies_show_their_organ_not_a_bone_scan(tmp_path: Path) -> None:
    def frame(part: str, scene: Scene) -> tuple[np.ndarray, float]:
        order = _with_series(Modality.NM, SeriesSpec(1, "STATIC", "NM_X", 1, scene=scene), body_part=part)
        ds = _read(write_study(order, tmp_path / part, seed=4, now=FIXED_NOW), 1)[0]
        assert ds.pixel_array.shape == (256, 256)
        return ds.pixel_array.astype(np.float32), float(ds.PixelSpacing[0])

    def pixel(img: np.ndarray, mm: float, x: float, y: float) -> float:  # mean counts around (x, y) mm from centre
        return _box(img, round(127.5 + y / mm), round(127.5 + x / mm), 3)

    thyroid, mm = frame("THYROID", Scene.PINHOLE)  # two lobes either side of the cold trachea, above the isthmus
    lobes = min(pixel(thyroid, mm, -17, 0), pixel(thyroid, mm, 17, 0))
    assert lobes > 4 * pixel(thyroid, mm, 0, -5) and lobes > 4 * pixel(thyroid, mm, 0, -45)
    kidneys, mm = frame("KIDNEY", Scene.RENAL)  # two kidneys either side of the cold spine
    assert min(pixel(kidneys, mm, -75, -30), pixel(kidneys, mm, 75, -30)) > 4 * pixel(kidneys, mm, 0, -30)
    assert pixel(kidneys, mm, 0, 170) > 4 * pixel(kidneys, mm, 0, 100)  # the bladder below
    hida, mm = frame("GALLBLADDER", Scene.HIDA)  # the gallbladder is the hottest spot, inside the liver
    assert pixel(hida, mm, -25, 45) > 1.5 * pixel(hida, mm, -90, -40) > 3 * pixel(hida, mm, 100, -40)


def test_mr_knee_sagittal_fat_saturated_t2_shows_bright_fluid_between_femur_and_tibia(tmp_path: Path) -> None:
    order = _with_series(Modality.MR, SeriesSpec(1, "SAG T2 FS", "KNEE_T2FS", 3, plane=Plane.SAGITTAL,
                                                 sequence_name="TSE", weighting=Weighting.T2, fat_sat=True),
                         body_part="KNEE")
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[1]
    img = ds.pixel_array.astype(np.float32)
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])
    col = round((12.0 - ipp[1]) / ps)  # the condyle's centre line (y = 12 mm)

    def row(z: float) -> int:
        return round((ipp[2] - z) / ps)

    profile = img[:, col - 2:col + 3].mean(axis=1)
    femur, tibia = profile[row(-640):row(-650)].mean(), profile[row(-695):row(-705)].mean()
    fluid = profile[row(-665):row(-680)].max()
    assert fluid > 2.5 * max(femur, tibia)
    assert femur > 40 and tibia > 40  # fat-saturated marrow is dark grey, not a hole


def test_dx_foot_shows_metatarsals_as_separate_elongated_bones(tmp_path: Path) -> None:
    order = _with_series(Modality.DX, SeriesSpec(1, "AP", "FOOT_AP", 1, view_position="AP"), body_part="FOOT")
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[0]
    img = ds.pixel_array.astype(np.float32)
    mm = float(ds.ImagerPixelSpacing[0])

    def bones_across(along: float) -> int:  # bright bands across the foot, ``along`` mm from the ankle joint
        r = round(img.shape[0] / 2 - (along - 50.0) / mm)
        profile = np.convolve(img[r - 3:r + 4].mean(axis=0), np.ones(15) / 15, mode="valid")  # 3 mm smoothing
        return _peaks(profile, rise=0.08 * float(img.max()))

    assert min(bones_across(a) for a in (90.0, 100.0, 110.0)) >= 4  # the same rays at every level: long bones
    assert bones_across(20.0) <= 3  # the hindfoot is a few large tarsals


def test_cardiac_cine_shows_bright_blood_and_spin_echo_t1_dark_blood(tmp_path: Path) -> None:
    order = _with_series(
        Modality.MR,
        SeriesSpec(1, "CINE 4CH", "H_CINE", 1, plane=Plane.AXIAL, sequence_name="SSFP", weighting=Weighting.T1),
        SeriesSpec(2, "AX T1 BLACK BLOOD", "H_T1", 1, plane=Plane.AXIAL, sequence_name="SE", weighting=Weighting.T1),
        body_part="HEART")
    result = write_study(order, tmp_path, seed=4, now=FIXED_NOW)
    ratio = []
    for series in (1, 2):
        ds = _read(result, series)[0]
        img = ds.pixel_array.astype(np.float32)
        blood = _box(img, *_pixel_of(ds, 22.0, -25.0), 3)  # left-ventricular cavity
        wall = _box(img, *_pixel_of(ds, 22.0, -75.0), 1)  # anterior myocardium
        ratio.append(blood / wall)
    assert ratio[0] > 2.0 > 1.0 > ratio[1]


def test_ultrasound_and_nm_frames_repeat_for_a_seed_and_change_between_frames() -> None:
    us = [phantoms_us.ultrasound("thyroid", 480, 640, seed=s, frame=f)
          for s, f in ((3, 0), (3, 0), (3, 1))]
    nm = [phantoms_nm.nm_image("renal", 256, frame=0, seed=s) for s in (3, 3, 4)]
    for a, same, other in (us, nm):
        assert np.array_equal(a, same) and not np.array_equal(a, other)


def test_the_curated_scene_not_the_description_decides_what_an_nm_or_us_series_shows(tmp_path: Path) -> None:
    def pixels(modality: Modality, part: str, description: str, scene: Scene) -> np.ndarray:
        order = _with_series(modality, SeriesSpec(1, description, "X", 1, scene=scene), body_part=part)
        out = tmp_path / f"{modality}-{description}-{scene}".replace(" ", "_")
        return _read(write_study(order, out, seed=4, now=FIXED_NOW), 1)[0].pixel_array.astype(np.float32)

    for modality, part, (said, other), (scene, changed) in (
            (Modality.US, "KIDNEY", ("RIGHT KIDNEY", "BLADDER"), (Scene.KIDNEY, Scene.BLADDER)),
            (Modality.NM, "CHEST", ("VENTILATION 8 VIEWS", "PERFUSION 8 VIEWS"), (Scene.VQ_VENT, Scene.VQ_PERF))):
        first = pixels(modality, part, said, scene)
        assert np.array_equal(first, pixels(modality, part, other, scene)), "another description, the same image"
        assert np.abs(first - pixels(modality, part, said, changed)).mean() > 2, "another scene, another image"


def test_new_nm_and_us_scenes_pass_dciodvfy(tmp_path: Path) -> None:
    binary = require_binary("dciodvfy")
    files = []
    for modality, part, scene in ((Modality.NM, "HEART", Scene.STRESS), (Modality.NM, "CHEST", Scene.VQ_VENT),
                                  (Modality.US, "THYROID", Scene.THYROID_LEFT), (Modality.US, "HEAD", Scene.HEAD_COR)):
        order = _with_series(modality, SeriesSpec(1, "SWEEP", "X", 1, scene=scene), body_part=part)
        files += sorted(write_study(order, tmp_path / part, seed=4, now=FIXED_NOW).study_dir.glob("*.dcm"))
    for path in files:
        out = subprocess.run([binary, str(path)], capture_output=True, text=True, check=False)
        assert not [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")], path


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


def test_mr_lumbar_spine_sagittal_t2_alternates_bright_discs_with_vertebral_bodies_in_front_of_bright_csf(
        tmp_path: Path) -> None:
    order = _with_series(Modality.MR, SeriesSpec(1, "SAG T2", "LS_T2", 3, plane=Plane.SAGITTAL, sequence_name="TSE",
                                                 weighting=Weighting.T2), body_part="LSPINE")
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[1]
    img = ds.pixel_array.astype(np.float32)
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])

    def col(y: float) -> int:
        return round((y - ipp[1]) / ps)

    def row(z: float) -> int:
        return round((ipp[2] - z) / ps)

    # down the middle of the lumbar bodies (y ≈ 52 mm), from T12 to the sacrum: a disc every ~36 mm
    axis = np.convolve(img[row(80):row(-120), col(48):col(56)].mean(axis=1), np.ones(3) / 3, mode="valid")
    assert _peaks(axis, rise=0.25 * float(np.median(axis))) >= 5  # T12-L1 … L5-S1
    assert axis.max() > 1.4 * float(np.median(axis))  # the nucleus is brighter than marrow on T2
    # behind the bodies the thecal sac: CSF brighter than the bodies in front of it, at the level of L3
    body = _box(img, row(-20), col(52), 3)
    csf = max(_box(img, row(-20), col(y), 1) for y in range(72, 86))
    assert csf > 1.5 * body

    def front(z: float) -> float:  # y (mm) of the anterior cortex of the vertebral body at height z
        line = img[row(z) - 1:row(z) + 2].mean(axis=0)
        c = col(25.0)
        while line[c] > 0.35 * float(np.median(axis)):
            c += 1
        return ipp[1] + c * ps

    assert front(-20) < min(front(52) - 3.0, front(-92))  # lordosis: L3 bows forward of L1 and L5
    disc = row(-38)  # the L3-L4 disc: a dark annulus in front of the bright nucleus
    assert _box(img, disc, col(51), 1) > 3 * _box(img, disc, col(37.5), 1)


def test_mr_knee_sagittal_shows_the_menisci_as_dark_wedges_thinning_toward_the_joint_centre(tmp_path: Path) -> None:
    order = _with_series(Modality.MR, SeriesSpec(1, "SAG PD FS", "KNEE_PDFS", 3, plane=Plane.SAGITTAL,
                                                 sequence_name="TSE", weighting=Weighting.PD, fat_sat=True),
                         body_part="KNEE")
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[1]
    img = ds.pixel_array.astype(np.float32)
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])

    def col(y: float) -> int:
        return round((y - ipp[1]) / ps)

    def row(z: float) -> int:
        return round((ipp[2] - z) / ps)

    joint = row(-672)
    centre = _box(img, joint, col(12), 1)  # cartilage and fluid between the condyle and the plateau
    anterior, posterior = _box(img, joint, col(-12), 1), _box(img, joint, col(36), 1)  # the two horns
    assert max(anterior, posterior) < 0.35 * centre

    def dark_height(y: float) -> int:  # how many rows around the joint line are meniscus-dark at this y
        column = img[row(-666):row(-678), col(y) - 1:col(y) + 2].mean(axis=1)
        return int((column < 0.35 * centre).sum())

    heights = [dark_height(y) for y in (-15.0, -12.0, -9.0, -6.0)]  # from the capsule toward the free edge
    assert all(a > b for a, b in zip(heights, heights[1:]))  # a wedge (triangle), not a flat band
    assert heights[0] >= 3 * max(dark_height(-4.0), 1)


def test_mr_shoulder_coronal_shows_the_supraspinatus_tendon_between_the_acromion_and_the_humeral_head(
        tmp_path: Path) -> None:
    order = _with_series(Modality.MR, SeriesSpec(1, "COR T1", "SH_T1", 3, plane=Plane.CORONAL, sequence_name="TSE",
                                                 weighting=Weighting.T1), body_part="SHOULDER")
    ds = _read(write_study(order, tmp_path, seed=4, now=FIXED_NOW), 1)[1]
    img = ds.pixel_array.astype(np.float32)
    ipp, ps = [float(v) for v in ds.ImagePositionPatient], float(ds.PixelSpacing[0])
    c = round((-181.0 - ipp[0]) / ps)  # a vertical line through the right humeral head

    def at(z: float) -> float:
        return float(img[round((ipp[2] - z) / ps), c - 1:c + 2].mean())

    head = np.mean([at(z) for z in np.arange(380.0, 400.0, 1.0)])  # fatty marrow: bright on T1
    tendon = min(at(z) for z in np.arange(415.0, 423.0, 0.5))
    acromion = max(at(z) for z in np.arange(427.0, 436.0, 0.5))
    assert tendon < 0.25 * head  # the dark tendon caps the head
    assert acromion > 0.7 * head  # with the acromion's marrow above it
