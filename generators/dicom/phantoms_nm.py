"""Planar and SPECT nuclear medicine images per study type: organ uptake maps with Poisson counts.

PS3.3 C.8.4.8 (NM Image Pixel): 16-bit counts. Each study shows the organ its tracer goes to, as a
reader expects from a thumbnail: myocardial perfusion SPECT a short-axis ring montage with long-axis
horseshoes, V/Q two lungs with a cold mediastinum, HIDA the liver, gallbladder and bowel, pertechnetate
the two thyroid lobes and isthmus, gastric emptying the stomach emptying into bowel over the frames,
MAG3 renography two kidneys and the bladder. Uptake is a sum of soft-edged ellipses, blurred to the
gamma camera's resolution, scaled to a study's count level and drawn as Poisson counts. The whole-body
bone scan lives in :func:`generators.dicom.phantoms.nm_bone_scan`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image


def pixel_spacing(scene: str) -> float:
    """Pixel spacing (mm) of a 256² frame of the scene: planar field (zoomed to the abdomen for HIDA, gastric
    and renal studies), zoomed thyroid, pinhole, SPECT."""
    return {"heart": 3.3, "stress": 3.3, "polar": 3.3, "thyroid": 1.1, "pinhole": 0.45, "vq-vent": 2.2,
            "vq-perf": 2.2}.get(scene, 1.7)


class _Map:
    """Uptake map over a planar field in mm: X across columns (viewer's right +), Y down the rows."""

    def __init__(self, size: int, spacing: float) -> None:
        c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
        self.X, self.Y = c[None, :], c[:, None]
        self.img = np.zeros((size, size), np.float32)

    def blob(self, cx: float, cy: float, ax: float, ay: float, value: float, angle: float = 0.0,
             edge: float = 0.15) -> np.ndarray:
        """Add ``value`` inside a soft-edged ellipse (semi-axes ax, ay mm, rotated ``angle`` degrees)."""
        dx, dy = self.X - cx, self.Y - cy
        if angle:
            a = math.radians(angle)
            dx, dy = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
        d = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        w = np.clip((1.0 - d) / edge, 0.0, 1.0)
        self.img += value * w
        return w

    def cut(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> None:
        """Remove uptake inside an ellipse (a cold organ impression, e.g. the heart on the left lung)."""
        dx, dy = self.X - cx, self.Y - cy
        if angle:
            a = math.radians(angle)
            dx, dy = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
        d = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        self.img *= np.clip((d - 0.85) / 0.15, 0.0, 1.0)


def _lungs(m: _Map, posterior: bool, ventilation: bool) -> None:
    s = -1.0 if posterior else 1.0  # anterior view: the patient's right lung on the viewer's left
    for side in (-1, 1):
        x = 68 * side * s
        lung = _Map(m.img.shape[0], float(m.X[0, 1] - m.X[0, 0]))
        lung.blob(x, 0, 58, 118, 1.0, -6 * side * s, edge=0.12)
        lung.img *= np.clip((m.Y + 130) / 60, 0.3, 1.0)  # apices smaller in volume
        if side == 1:
            lung.cut(22 * s, 60, 52, 55)  # cardiac impression on the left lung
        lung.cut(x, 150, 85, 45)  # diaphragmatic domes
        if ventilation:  # aerosol: patchier central deposition
            lung.img *= 0.8 + 0.4 * np.exp(-(((m.X - 30 * side * s) / 40) ** 2 + (m.Y / 60) ** 2))
        m.img += lung.img
    if ventilation:
        m.blob(0, -150, 7, 60, 0.9)  # trachea
        m.blob(-12 * s, -85, 20, 5, 0.6, 30 * s)  # main bronchi
        m.blob(12 * s, -85, 20, 5, 0.6, -30 * s)
        m.blob(55 * s, 190, 30, 18, 0.6)  # swallowed aerosol in the stomach


def _heart_montage(m: _Map, stress: bool) -> None:
    """SPECT display: two rows of short-axis rings (apex → base), a row of vertical and one of horizontal
    long-axis horseshoes, each in a 64-pixel tile."""
    size = m.img.shape[0]
    tile = size // 4
    yy, xx = np.mgrid[0:tile, 0:tile].astype(np.float32)
    c = (tile - 1) / 2
    for k in range(8):  # short axis: the ring widens from apex to base
        ro = 8.0 + 11.0 * min(k, 5) / 5
        ri = max(ro - 8.0, 0.0) if k else 0.0
        r = np.hypot(yy - c, xx - c)
        wall = np.clip(1 - np.abs(r - (ro + ri) / 2) / ((ro - ri) / 2 + 1.5), 0, 1)
        if stress and k >= 3:
            ang = np.arctan2(yy - c, xx - c)
            wall *= 1 - 0.25 * np.exp(-((ang - 1.2) / 0.5) ** 2)  # a mild inferior attenuation artefact
        r0, c0 = (k // 4) * tile, (k % 4) * tile
        m.img[r0:r0 + tile, c0:c0 + tile] += wall
    for row, open_axis in ((2, "x"), (3, "y")):
        for k in range(4):
            half = 20.0 - 3.0 * abs(k - 1.5)
            if open_axis == "x":  # vertical long axis: apex to the left, base (open) to the right
                u, v = xx - c + 4, yy - c
            else:  # horizontal long axis: apex at the top, base (open) at the bottom
                u, v = yy - c + 4, xx - c
            # a U: an elliptical ring of semi-axes (L, half) with everything beyond the base removed
            d = np.sqrt((np.minimum(u, 0) / 22) ** 2 + (v / half) ** 2)  # round apex, straight walls
            wall = np.clip(1 - np.abs(d - 0.78) / 0.24, 0, 1) * (u < 14)
            r0, c0 = row * tile, k * tile
            m.img[r0:r0 + tile, c0:c0 + tile] += wall


def _polar_map(m: _Map) -> None:
    """A bull's-eye: apex in the centre, base at the rim, faint borders of the 17-segment model."""
    r = np.hypot(m.X, m.Y) / (m.img.shape[0] * 3.3 * 0.36)
    ang = np.arctan2(m.Y, m.X)
    value = 0.95 - 0.2 * r + 0.05 * np.cos(3 * ang) * r
    borders = (np.abs(r - 0.25) < 0.012) | (np.abs(r - 0.55) < 0.012) | (np.abs(r - 0.8) < 0.012)
    borders |= (r > 0.55) & (np.abs(np.mod(ang, math.pi / 3) - math.pi / 6) < 0.01 / np.maximum(r, 0.1))
    m.img += np.where(r < 1, np.where(borders, value * 0.55, value), 0.0)


def _hida(m: _Map, cck: bool, frame: int) -> None:
    m.blob(-55, -40, 105, 80, 0.55, 15)  # liver: the patient's right on the viewer's left
    m.cut(40, -80, 50, 40)
    gb = 0.45 if cck else 1.0
    m.blob(-25, 45, 15 * (0.7 if cck else 1.0), 24 * (0.7 if cck else 1.0), 1.6 * gb, -20)  # gallbladder
    m.blob(-5, 25, 5, 30, 0.5, 25)  # common bile duct
    m.blob(15, 55, 22, 8, 0.7, -20)  # duodenum
    for bx, by in ((30, 95), (-5, 115), (45, 140), (10, 160), (-30, 140)):
        m.blob(bx, by, 24, 14, 0.35 + (0.25 if cck else 0.0), bx)  # small bowel loops
    m.blob(25, -130, 35, 35, 0.12)  # cardiac blood pool


def _thyroid(m: _Map, frame: int, pinhole: bool) -> None:
    k = 1.0  # the pinhole's magnification is its smaller pixel spacing
    skew = (-1, 0, 1)[frame % 3] if not pinhole else 0  # anterior, then the two obliques
    for side in (-1, 1):
        near = 1.0 + 0.15 * skew * side
        m.blob(side * (17 - 4 * skew * side) * k, 5 * k, 11 * k * (1 - 0.2 * abs(skew)), 24 * k, 1.0 * near,
               -14 * side)
    m.blob(0, 18 * k, 13 * k, 5 * k, 0.55)  # isthmus
    if not pinhole:
        for side in (-1, 1):
            m.blob(side * 48, -62, 15, 18, 0.35)  # parotids
            m.blob(side * 32, -38, 10, 8, 0.3)  # submandibular glands
        m.blob(0, -58, 20, 8, 0.25)  # mouth / saliva
        m.img += 0.04 * np.exp(-((m.X / 70) ** 2 + (m.Y / 90) ** 2))  # blood pool of the neck


def _gastric(m: _Map, frame: int) -> None:
    k = 1.5  # mm per model unit: an adult stomach is about 15 cm from fundus to pylorus
    remaining = (1.0, 0.62, 0.3, 0.08)[frame % 4]  # hours 0, 1, 2, 4
    m.blob(55 * k, -55 * k, 32 * k, 34 * k, 1.0 * remaining)  # fundus: the patient's left upper quadrant
    m.blob(40 * k, 0, 24 * k, 40 * k, 0.9 * remaining, 20)  # body
    m.blob(-5 * k, 35 * k, 32 * k, 15 * k, 0.8 * remaining, -10)  # antrum toward the pylorus
    moved = 1.0 - remaining
    for bx, by in ((-30, 60), (0, 80), (30, 95), (-10, 115), (-45, 100)):
        m.blob(bx * k, by * k, 22 * k, 13 * k, 0.45 * moved * (1.2 - 0.2 * (frame % 4)), bx)  # small bowel
    if frame % 4 == 3:
        m.blob(-70 * k, 80 * k, 20 * k, 55 * k, 0.4)  # ascending colon by 4 hours


def _renal(m: _Map, late: bool) -> None:
    cortex = 0.35 if late else 1.0
    for side in (-1, 1):  # posterior view: the patient's left kidney on the viewer's left
        m.blob(70 * side, -20, 27, 50, cortex, -14 * side)
        m.cut(52 * side, -15, 9, 13)  # hilum
        m.blob(55 * side, -12, 10, 12, 0.5 if late else 1.1)  # renal pelvis
    m.blob(0, 170, 34 if late else 22, 26 if late else 16, 2.2 if late else 0.9)  # bladder
    m.blob(-35, -120, 70, 40, 0.08)  # liver / blood background
    m.blob(0, 0, 130, 190, 0.05)


def _blur(img: np.ndarray, factor: int) -> np.ndarray:
    size = img.shape
    small = Image.fromarray(img, mode="F").resize((size[1] // factor, size[0] // factor), Image.BILINEAR)
    return np.array(small.resize((size[1], size[0]), Image.BICUBIC), np.float32)


@functools.lru_cache(maxsize=8)
def uptake(scene: str, size: int, frame: int) -> np.ndarray:
    """Expected counts (float32 size × size) of one frame of a scene; cached, read-only."""
    m = _Map(size, pixel_spacing(scene) * 256 / size)
    posterior = bool(frame % 2)
    if scene == "heart":
        _heart_montage(m, stress=False)
    elif scene == "stress":
        _heart_montage(m, stress=True)
    elif scene == "polar":
        _polar_map(m)
    elif scene in ("vq-vent", "vq-perf"):
        _lungs(m, posterior, scene == "vq-vent")
    elif scene in ("hida", "hida-cck"):
        _hida(m, scene == "hida-cck", frame)
    elif scene in ("thyroid", "pinhole"):
        _thyroid(m, frame, scene == "pinhole")
    elif scene == "gastric":
        _gastric(m, frame)
    elif scene in ("renal", "renal-late"):
        _renal(m, scene == "renal-late")
    else:
        raise ValueError(f"no NM scene {scene!r}")
    peak = {"heart": 220.0, "stress": 260.0, "polar": 200.0, "pinhole": 160.0}.get(scene, 120.0)
    img = _blur(np.clip(m.img, 0, None), 2 if scene in ("heart", "stress", "polar") else 3)
    np.clip(img, 0, None, out=img)
    img *= peak / max(float(img.max()), 1e-6)
    img += 0.3  # room background
    img.flags.writeable = False
    return img


def nm_image(scene: str, size: int, *, frame: int, seed: int) -> np.ndarray:
    """One NM frame (uint16 Poisson counts) of a series' curated scene (:class:`generators.terms.Scene`)."""
    rng = np.random.default_rng(seed)
    return rng.poisson(uptake(scene, size, frame % 4)).astype(np.uint16)
