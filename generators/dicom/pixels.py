"""Per-series pixel sources: matrix, encoding, geometry and a ``frame(i)`` that yields slice ``i``.

Cross-sectional series (CT/MR) slice a cached stack of anatomy levels (:func:`phantoms.label_levels`
through an intensity lookup table) and add per-slice noise taken as an offset window of a
pre-generated noise bank, written into a small ring of reusable buffers: the per-slice cost is one
vectorised ``int16`` addition. Projection modalities compute each (rarely more than a few) image
directly. Everything is a function of the seed, so the same seed gives identical pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from generators.dicom import phantoms, phantoms_nm, phantoms_pet, phantoms_us, phantoms_xa
from generators.terms import (
    CT_WINDOWS,
    Contrast,
    ContrastPhase,
    Laterality,
    Modality,
    Plane,
    Projection,
    Scene,
    SeriesRole,
    Weighting,
    WindowPreset,
)
from generators.types import ExamInfo, SeriesSpec

# Levels along the slice normal at which the anatomy is evaluated; slices between share the nearest.
MAX_LEVELS = 64
# Buffers in the ring: the writer queue depth + the one being written + the one being filled, with margin.
RING = 8

_ORIENTATION: dict[Plane, tuple[float, ...]] = {
    Plane.AXIAL: (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    Plane.NONE: (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    Plane.CORONAL: (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    Plane.SAGITTAL: (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
}


@dataclass(frozen=True, slots=True)
class Geometry:
    """Image Plane geometry of a stack (PS3.3 C.7.6.2): slices step by ``spacing`` along the normal."""

    orientation: tuple[float, ...]
    normal: tuple[float, float, float]
    first: tuple[float, float, float]  # ImagePositionPatient of slice 0 (center of its first pixel)
    spacing: float
    pixel_spacing: float
    thickness: float
    # A multi-plane series (an MR three-plane localizer): instance i lies in planes[i % n] as its slice i // n,
    # so Image Orientation (Patient) is a per-instance value (``orientation_at``).
    planes: tuple[Geometry, ...] = ()

    def orientation_at(self, i: int) -> tuple[float, ...]:
        return self.planes[i % len(self.planes)].orientation if self.planes else self.orientation

    def position(self, i: int) -> tuple[float, float, float]:
        if self.planes:
            return self.planes[i % len(self.planes)].position(i // len(self.planes))
        s = i * self.spacing
        return (self.first[0] + s * self.normal[0], self.first[1] + s * self.normal[1],
                self.first[2] + s * self.normal[2])

    def location(self, i: int) -> float:
        """Slice Location (0020,1041): the position projected on the normal (of the instance's plane)."""
        if self.planes:
            return self.planes[i % len(self.planes)].location(i // len(self.planes))
        p = self.position(i)
        return p[0] * self.normal[0] + p[1] * self.normal[1] + p[2] * self.normal[2]


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def stack_geometry(region: phantoms.Region, plane: Plane, rows: int, cols: int, count: int, spacing: float,
                   thickness: float) -> Geometry:
    """Geometry of ``count`` slices centred on the region; pixel (0,0) of each slice is its top-left corner."""
    iop = _ORIENTATION[plane]
    row_dir, col_dir = iop[:3], iop[3:]
    normal = _cross(row_dir, col_dir)
    ps = region.fov / cols
    c = region.center
    off_c, off_r, off_n = -(cols - 1) / 2 * ps, -(rows - 1) / 2 * ps, -(count - 1) / 2 * spacing
    first = tuple(c[k] + off_c * row_dir[k] + off_r * col_dir[k] + off_n * normal[k] for k in range(3))
    return Geometry(iop, normal, first, spacing, ps, thickness)  # type: ignore[arg-type]


@dataclass(slots=True)
class SeriesPixels:
    """What a series' pixels look like and how to get them (PS3.3 C.7.6.3 Image Pixel)."""

    rows: int
    cols: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    window: tuple[tuple[float, ...], tuple[float, ...]]  # (centers, widths), first pair is the default
    frame: Callable[[int], np.ndarray]
    geometry: Geometry | None = None
    pixel_spacing: float = 0.0  # in-plane / imager pixel spacing (mm)
    rescale: tuple[float, float] | None = None  # (intercept, slope)
    # frames per instance (PS3.3 C.7.6.6): instance i holds frame(i * frames) .. frame(i * frames + frames - 1)
    frames: int = 1


def series_has_contrast(exam: ExamInfo, spec: SeriesSpec) -> bool:
    """Whether a series is acquired after contrast: its phase says so, or a "with contrast" exam left it unset."""
    if spec.contrast_phase == ContrastPhase.NONCONTRAST or exam.contrast == Contrast.NONE:
        return False
    if spec.contrast_phase != ContrastPhase.NONE:
        return True
    return exam.contrast == Contrast.WITH and spec.role != SeriesRole.LOCALIZER


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([abs(p) for p in parts]).generate_state(1)[0])


class _Stack:
    """Slices of cached intensity levels plus a rolled noise bank, written into a ring of buffers."""

    def __init__(self, levels: tuple[np.ndarray, ...], positions: np.ndarray, level_pos: np.ndarray,
                 noise: np.ndarray, seed: int) -> None:
        self.levels = levels
        self.shape = levels[0].shape
        n = self.shape[0] * self.shape[1]
        # nearest level for every slice (level positions are sorted)
        idx = np.searchsorted(level_pos, positions).clip(1, len(level_pos) - 1)
        left_closer = np.abs(positions - level_pos[idx - 1]) <= np.abs(positions - level_pos[idx])
        self.index = np.where(left_closer, idx - 1, idx)
        self.noise = noise
        self.offsets = np.random.default_rng(seed).integers(0, noise.size - n, len(positions))
        self.n = n
        self.ring = np.empty((RING, *self.shape), levels[0].dtype)

    def __call__(self, i: int) -> np.ndarray:
        out = self.ring[i % RING]
        off = int(self.offsets[i])
        np.add(self.levels[self.index[i]], self.noise[off:off + self.n].reshape(self.shape), out=out)
        return out


def _stack_pixels(labels_key: tuple, lut: np.ndarray, plane: Plane, geometry: Geometry, count: int, *, seed: int,
                  sigma: float, lo: int, hi: int, shade: bool) -> _Stack:
    axis = phantoms.PLANE_AXES[plane][4]
    positions = np.array([geometry.position(i)[axis] for i in range(count)], np.float64)
    k = min(count, MAX_LEVELS)
    level_pos = np.linspace(positions.min(), positions.max(), k) if k > 1 else positions[:1].copy()
    key = (*labels_key, tuple(round(float(p), 3) for p in level_pos))
    levels = phantoms.intensity_levels(key, lut.astype(np.float32).tobytes(), lo, hi, shade)
    rows, cols = levels[0].shape
    noise = phantoms.noise_bank(rows * cols, sigma, 3 * sigma)
    return _Stack(levels, positions, level_pos, noise, seed)


def _window_from(levels_frame: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lo, hi = np.percentile(levels_frame, (1.0, 99.5))
    return (round(float(lo + hi) / 2, 1),), (round(max(float(hi - lo), 1.0), 1),)


def _ct_window(body_part: str, preset: WindowPreset = WindowPreset.NONE
               ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Window Center/Width (HU) of a CT series: the body part's usual pair, or the series' curated preset
    first (the default a viewer and the preview apply), followed by the body part's others."""
    centers, widths = _ct_body_part_window(body_part)
    if preset == WindowPreset.NONE:
        return centers, widths
    center, width = CT_WINDOWS[preset]
    others = [(c, w) for c, w in zip(centers, widths, strict=True) if (c, w) != (center, width)]
    return (center, *(c for c, _ in others)), (width, *(w for _, w in others))


def _ct_body_part_window(body_part: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    part = body_part.upper()
    if part in {"HEAD", "BRAIN"}:
        return (40.0,), (80.0,)
    if part in {"CHEST", "HEART", "CHESTABDPELVIS"}:
        return (40.0, -600.0), (400.0, 1500.0)
    if part in {"SKULL", "SINUS", "ORBIT", "CSPINE", "TSPINE", "LSPINE", "SPINE"} or part in _EXTREMITIES:
        return (400.0, 40.0), (1800.0, 400.0)
    return (40.0,), (400.0,)


_EXTREMITIES = {"ANKLE", "ELBOW", "FEMUR", "FOOT", "FOREARM", "HAND", "HIP", "HUMERUS", "KNEE", "LEG",
                "SHOULDER", "WRIST", "EXTREMITY", "CLAVICLE"}


def _spacing(spec: SeriesSpec, modality: Modality) -> tuple[float, float]:
    thickness = spec.slice_thickness_mm or (5.0 if modality == Modality.CT else 4.0)
    gap = 1.0 if modality == Modality.CT or spec.weighting in (Weighting.TOF,) else 1.1
    return thickness, round(thickness * gap, 3)


def series_pixels(exam: ExamInfo, spec: SeriesSpec, count: int, *, seed: int) -> SeriesPixels:
    """Pixel source for one series of ``exam`` (count instances), deterministic in ``seed``."""
    modality = exam.modality
    series_seed = _seed(seed, spec.number)
    lat = exam.laterality if exam.laterality != Laterality.NONE else spec.image_laterality
    if modality in (Modality.CT, Modality.MR):
        return _cross_sectional(exam, spec, count, series_seed, lat)
    if modality in (Modality.DX, Modality.CR):
        chest = exam.body_part.upper() in {"CHEST", "HEART", "TSPINE", "CLAVICLE", "ABDOMEN", "PELVIS", "LSPINE",
                                           "SPINE", "ABDOMENPELVIS", "HIP", "SHOULDER", "SKULL", "WHOLEBODY"}
        rows, cols = (2048, 2048) if chest else (1280, 1024)
        region = phantoms.region_for(exam.body_part, lat)
        # the curated projection turns the beam (oblique, mortise) or sends it along the femur (sunrise);
        # the View Position (0018,5101) stays the AP/PA term the standard has for them
        view = spec.projection.value.upper() if spec.projection != Projection.NONE else (spec.view_position or "PA")

        def frame(i: int) -> np.ndarray:
            return phantoms.radiograph(exam.body_part, lat, view, rows, cols, seed=_seed(series_seed, i))

        # the sunrise view spans the joint's width (region.fov) across; the others the region's coverage down
        spacing = region.fov / cols if spec.projection == Projection.AXIAL_PATELLOFEMORAL else region.coverage / rows
        return SeriesPixels(rows, cols, 16, 12, False, ((2048.0,), (4096.0,)), frame,
                            pixel_spacing=round(spacing, 4))
    if modality == Modality.MG:
        side = spec.image_laterality if spec.image_laterality in (Laterality.LEFT, Laterality.RIGHT) else (
            exam.laterality if exam.laterality in (Laterality.LEFT, Laterality.RIGHT) else Laterality.RIGHT)
        view = spec.view_position or "CC"

        def mg_frame(i: int) -> np.ndarray:
            return phantoms.mammogram(2048, 1664, laterality=side, view=view, seed=_seed(series_seed, i))

        return SeriesPixels(2048, 1664, 16, 12, False, ((2000.0,), (3200.0,)), mg_frame, pixel_spacing=0.1)
    if modality == Modality.US:
        scene = spec.scene.value
        probe = phantoms_us.probe_for(scene)
        spacing = (phantoms_us.linear_pixel_spacing(480, 640) if probe == phantoms_us.LINEAR
                   else phantoms_us.sector_pixel_spacing(probe, 480))

        def us_frame(i: int) -> np.ndarray:
            return phantoms_us.ultrasound(scene, 480, 640, seed=series_seed, frame=i)

        return SeriesPixels(480, 640, 8, 8, False, ((127.0,), (255.0,)), us_frame, pixel_spacing=round(spacing, 4),
                            frames=spec.frames)
    if modality in (Modality.XA, Modality.RF):
        return _xray_run(exam, spec, series_seed)
    if modality == Modality.NM:
        scene = spec.scene.value
        if spec.scene == Scene.BONE:
            def nm_frame(i: int) -> np.ndarray:
                return phantoms.nm_bone_scan(1024, 256, posterior=bool(i % 2), seed=_seed(series_seed, i))

            region = phantoms.region_for("WHOLEBODY")
            return SeriesPixels(1024, 256, 16, 16, False, ((40.0,), (80.0,)), nm_frame,
                                pixel_spacing=round(region.coverage / 1024, 4))

        def nm_study_frame(i: int) -> np.ndarray:
            return phantoms_nm.nm_image(scene, 256, frame=i, seed=_seed(series_seed, i))

        peak = float(phantoms_nm.uptake(scene, 256, 0).max())
        return SeriesPixels(256, 256, 16, 16, False, ((round(peak * 0.5, 1),), (round(peak, 1),)), nm_study_frame,
                            pixel_spacing=phantoms_nm.pixel_spacing(scene))
    if modality == Modality.PT:
        return _pet_ct(exam, spec, count, series_seed)
    raise ValueError(f"no pixel generator for modality {modality}")


def _pet_ct(exam: ExamInfo, spec: SeriesSpec, count: int, series_seed: int) -> SeriesPixels:
    """A PET/CT series: the low-dose CT (attenuation correction) or the PET emission stack, both axial over the
    study's range (:func:`phantoms_pet.field_for`) so that they share one Frame of Reference and fuse."""
    ct = phantoms_pet.is_ct_series(spec.kvp)
    matrix = phantoms_pet.CT_MATRIX if ct else phantoms_pet.PET_MATRIX
    thickness = spec.slice_thickness_mm or (5.0 if ct else 3.0)
    geometry = stack_geometry(phantoms_pet.field_for(exam), Plane.AXIAL, matrix, matrix, count, thickness, thickness)
    if ct:
        lut = phantoms.ct_lut(ContrastPhase.NONE) + 1024.0
        stack = _stack_pixels(("WHOLEBODY", Laterality.NONE, Plane.AXIAL, matrix, matrix), lut, Plane.AXIAL,
                              geometry, count, seed=series_seed, sigma=20.0, lo=40, hi=4055, shade=False)
        return SeriesPixels(matrix, matrix, 16, 12, False, ((40.0,), (400.0,)), stack, geometry,
                            geometry.pixel_spacing, rescale=(-1024.0, 1.0))
    positions = np.array([geometry.position(i)[2] for i in range(count)], np.float64)
    emission = phantoms_pet.EmissionStack(phantoms_pet.tracer_for(exam), positions, matrix, geometry.pixel_spacing,
                                          series_seed)
    # the default window shows SUV 0-6 (stored = SUV × SUV_SCALE); rescale slope is set by the header (Bq/ml)
    scale = phantoms_pet.SUV_SCALE
    return SeriesPixels(matrix, matrix, 16, 16, False, ((3.0 * scale,), (6.0 * scale,)), emission, geometry,
                        geometry.pixel_spacing)


def _xray_run(exam: ExamInfo, spec: SeriesSpec, series_seed: int) -> SeriesPixels:
    """XA / RF runs (:mod:`phantoms_xa`): 512 x 512 8-bit frames; each instance is one run of ``spec.frames``."""
    frames = max(spec.frames, 1)
    draw = phantoms_xa.angiogram if exam.modality == Modality.XA else phantoms_xa.fluoroscopy

    def frame(i: int) -> np.ndarray:
        run, k = divmod(i, frames)
        return draw(exam.body_part, k, frames, seed=_seed(series_seed, run))

    return SeriesPixels(phantoms_xa.SIZE, phantoms_xa.SIZE, 8, 8, False, ((128.0,), (256.0,)), frame,
                        pixel_spacing=phantoms_xa.pixel_spacing(exam.body_part), frames=frames)


# Vendor names of balanced steady-state free precession, the bright-blood cine sequence.
_SSFP_NAMES = {"SSFP", "TRUFI", "FIESTA", "BTFE", "BFFE"}


def _cross_sectional(exam: ExamInfo, spec: SeriesSpec, count: int, series_seed: int, lat: Laterality
                     ) -> SeriesPixels:
    modality = exam.modality
    region = phantoms.region_for(exam.body_part, lat)
    localizer = spec.role == SeriesRole.LOCALIZER or spec.weighting == Weighting.LOCALIZER
    if modality == Modality.CT:
        rows = cols = 512
    else:
        rows = cols = 256 if (localizer or region.fov > 300) else 320 if region.fov > 200 else 384
    plane = spec.plane if spec.plane != Plane.NONE else (Plane.CORONAL if localizer else Plane.AXIAL)
    thickness, spacing = _spacing(spec, modality)
    geometry = stack_geometry(region, plane, rows, cols, count, spacing, thickness)
    labels_key = (exam.body_part.upper(), lat, plane, rows, cols)
    if modality == Modality.CT:
        if localizer:
            return _ct_localizer(exam, geometry, rows, cols, series_seed, lat)
        phase = spec.contrast_phase
        if phase == ContrastPhase.NONE and series_has_contrast(exam, spec):
            phase = ContrastPhase.POST
        lut = phantoms.ct_lut(phase) + 1024.0  # stored = HU - RescaleIntercept
        stack = _stack_pixels(labels_key, lut, plane, geometry, count, seed=series_seed, sigma=12.0,
                              lo=40, hi=4055, shade=False)
        return SeriesPixels(rows, cols, 16, 12, False, _ct_window(exam.body_part, spec.window), stack, geometry,
                            geometry.pixel_spacing, rescale=(-1024.0, 1.0))
    if localizer and spec.plane == Plane.NONE:
        return _mr_three_plane_localizer(exam, spec, count, series_seed, lat, rows, cols)
    contrast = series_has_contrast(exam, spec)
    cine = "CINE" in spec.description.upper() or (spec.sequence_name or "").upper() in _SSFP_NAMES
    lut = phantoms.mr_lut(spec.weighting, spec.fat_sat, contrast, bright_blood=cine) * 2.0
    stack = _stack_pixels(labels_key, lut, plane, geometry, count, seed=series_seed, sigma=10.0,
                          lo=40, hi=4055, shade=True)
    window = _window_from(stack.levels[stack.index[count // 2]])
    return SeriesPixels(rows, cols, 16, 12, False, window, stack, geometry, geometry.pixel_spacing)


# The order a three-plane localizer acquires its planes in (PS3.3 C.8.3.1.1.1 calls it LOCALIZER image type).
LOCALIZER_PLANES = (Plane.AXIAL, Plane.SAGITTAL, Plane.CORONAL)


def _mr_three_plane_localizer(exam: ExamInfo, spec: SeriesSpec, count: int, series_seed: int, lat: Laterality,
                              rows: int, cols: int) -> SeriesPixels:
    """An MR scout of an unset plane: instances cycle axial, sagittal, coronal through the region centre
    (several per plane when the series has more than three), each with its own Image Orientation."""
    region = phantoms.region_for(exam.body_part, lat)
    thickness, spacing = _spacing(spec, exam.modality)
    per_plane = [len(range(k, count, len(LOCALIZER_PLANES))) for k in range(len(LOCALIZER_PLANES))]
    lut = phantoms.mr_lut(spec.weighting, spec.fat_sat, False) * 2.0
    geometries, stacks = [], []
    for k, plane in enumerate(LOCALIZER_PLANES):
        n = max(per_plane[k], 1)
        g = stack_geometry(region, plane, rows, cols, n, spacing, thickness)
        geometries.append(g)
        stacks.append(_stack_pixels((exam.body_part.upper(), lat, plane, rows, cols), lut, plane, g, n,
                                    seed=_seed(series_seed, k), sigma=10.0, lo=40, hi=4055, shade=True))
    first = geometries[0]
    geometry = Geometry(first.orientation, first.normal, first.first, spacing, first.pixel_spacing, thickness,
                        planes=tuple(geometries))

    def frame(i: int) -> np.ndarray:
        return stacks[i % len(stacks)](i // len(stacks))

    window = _window_from(stacks[0].levels[stacks[0].index[0]])
    return SeriesPixels(rows, cols, 16, 12, False, window, frame, geometry, geometry.pixel_spacing)


def _ct_localizer(exam: ExamInfo, geometry: Geometry, rows: int, cols: int, series_seed: int, lat: Laterality
                  ) -> SeriesPixels:
    """A CT scout: an AP projection shown in HU-like stored values, on a coronal plane through the center."""
    base = phantoms.ct_scout(exam.body_part, lat, rows, cols)

    def frame(i: int) -> np.ndarray:
        rng = np.random.default_rng(_seed(series_seed, i))
        return base + rng.integers(-20, 21, base.shape, dtype=np.int16)

    return SeriesPixels(rows, cols, 16, 12, False, ((1200.0,), (3000.0,)), frame, geometry, geometry.pixel_spacing,
                        rescale=(-1024.0, 1.0))


def thumbnail_window(pixels: SeriesPixels) -> tuple[float, float]:
    """The default window (center, width) in stored values, undoing the rescale for CT."""
    center, width = pixels.window[0][0], pixels.window[1][0]
    if pixels.rescale:
        center = (center - pixels.rescale[0]) / pixels.rescale[1]
        width = width / pixels.rescale[1]
    return center, max(width, 1.0)
