"""B-mode ultrasound scenes (a series' curated scene): an echogenicity map in probe coordinates, Rayleigh speckle.

PS3.3 C.8.5.6 (US Image): 8-bit MONOCHROME2, dark outside the scanned field. Each scene paints an
echogenicity map in probe coordinates, ``x`` lateral and ``z`` depth (mm), so organs have their real
sizes: curvilinear and endocavitary probes show a fan (sector), linear probes (vascular, thyroid,
breast, testis, infant hip, bowel) a rectangle. Anechoic fluid raises the echoes behind it
(posterior acoustic enhancement) and bone or air blocks them (shadowing), as a reader expects; the
grey levels come from multiplicative Rayleigh speckle with depth attenuation and time-gain
compensation. The echo map is cached per (scene, matrix, sweep phase); the speckle is per frame.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Probe:
    """The scanned field: a fan (``half_angle`` > 0, apex above the image) or a linear rectangle."""

    depth_mm: float
    half_angle: float = 0.0  # radians; 0 = linear array
    width_mm: float = 0.0  # linear array footprint
    apex_radius_mm: float = 0.0  # radius of curvature of a convex face


CONVEX = Probe(depth_mm=160.0, half_angle=math.radians(34), apex_radius_mm=40.0)
ENDOCAVITY = Probe(depth_mm=90.0, half_angle=math.radians(62), apex_radius_mm=9.0)
FONTANELLE = Probe(depth_mm=95.0, half_angle=math.radians(50), apex_radius_mm=8.0)
LINEAR = Probe(depth_mm=48.0, width_mm=50.0)


class _Canvas:
    """Echogenicity (``echo``) and through-transmission (``trans``) maps over probe coordinates."""

    def __init__(self, x: np.ndarray, z: np.ndarray, xb: np.ndarray, beam_scale: Callable[[float], float],
                 background: float) -> None:
        self.x, self.z, self.xb, self.beam_scale = x, z, xb, beam_scale
        self.echo = np.full(x.shape, background, np.float32)
        self.trans = np.ones(x.shape, np.float32)

    def dist(self, cx: float, cz: float, ax: float, az: float, angle: float = 0.0) -> np.ndarray:
        """Squared normalised distance to an ellipse (semi-axes ax, az, rotated by ``angle`` degrees)."""
        dx, dz = self.x - cx, self.z - cz
        if angle:
            a = math.radians(angle)
            dx, dz = dx * math.cos(a) + dz * math.sin(a), -dx * math.sin(a) + dz * math.cos(a)
        return (dx / ax) ** 2 + (dz / az) ** 2

    def ellipse(self, cx: float, cz: float, ax: float, az: float, value: float, angle: float = 0.0, *,
                wall: float = 0.0, wall_value: float = 1.2, behind: float = 1.0) -> np.ndarray:
        """Fill an ellipse; ``wall`` (mm) adds a bright rim, ``behind`` scales echoes deeper than it."""
        d = self.dist(cx, cz, ax, az, angle)
        inside = d <= 1.0
        if wall:
            rim = (d <= (1 + wall / min(ax, az)) ** 2) & ~inside
            self.echo[rim] = wall_value
        self.echo[inside] = value
        if behind != 1.0:
            self.shadow(cx, cz, max(ax, az) * 0.8 if angle else ax * 0.85, behind)
        return inside

    def shadow(self, cx: float, cz: float, half_width: float, factor: float) -> None:
        """Scale the echoes along the beams through (cx ± half_width) deeper than ``cz`` (enhancement/shadow)."""
        xb_c = self.beam(cx, cz)
        band = (np.abs(self.xb - xb_c) < half_width) & (self.z > cz)
        self.trans[band] *= factor

    def beam(self, x: float, z: float) -> float:
        """The beam coordinate of point (x, z): constant along one scan line (see :func:`_coordinates`)."""
        return float(x * self.beam_scale(z))

    def band(self, z0: float, z1: float, value: float, wave: float = 0.0, period: float = 40.0) -> None:
        """A layer between depths z0 and z1 (optionally wavy), e.g. skin, fat, muscle."""
        off = wave * np.sin(self.x * (2 * math.pi / period)) if wave else 0.0
        self.echo[(self.z >= z0 + off) & (self.z < z1 + off)] = value

    def tube(self, centre: Callable[[np.ndarray], np.ndarray], radius: Callable[[np.ndarray], np.ndarray],
             x0: float, x1: float, value: float, wall: float = 0.8, wall_value: float = 1.3) -> None:
        """A vessel in long axis: lumen |z - centre(x)| < radius(x) for x0 ≤ x ≤ x1, bright intima walls."""
        span = (self.x >= x0) & (self.x <= x1)
        off = np.abs(self.z - centre(self.x))
        r = radius(self.x)
        self.echo[span & (off < r + wall) & (off >= r)] = wall_value
        self.echo[span & (off < r)] = value
        self.trans[span & (self.z > centre(self.x) + r)] *= 1.25

    def striations(self, mask: np.ndarray, spacing: float = 3.0, gain: float = 1.8) -> None:
        """Muscle fascicles: thin bright lines roughly parallel to the skin."""
        lines = np.cos((self.z + 0.08 * self.x) * (2 * math.pi / spacing)) > 0.8
        self.echo[mask & lines] *= gain


def _coordinates(probe: Probe, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 Callable[[float], float]]:
    """(x, z, beam coordinate, field mask, beam scale) in mm for each pixel of a probe's image."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    if probe.half_angle:
        top, bottom = 0.02 * rows, 0.99 * rows
        mmpp = probe.depth_mm / (bottom - top)
        apex_r = top - probe.apex_radius_mm / mmpp
        r = np.hypot(yy - apex_r, xx - cols / 2) * mmpp
        theta = np.arctan2(xx - cols / 2, yy - apex_r)
        z = r - probe.apex_radius_mm
        field = (z >= 0) & (z <= probe.depth_mm) & (np.abs(theta) <= probe.half_angle)
        ref = probe.apex_radius_mm + probe.depth_mm / 2
        x = theta * r  # arc length at depth r
        xb = theta * ref  # constant along a scan line (a ray from the apex)

        def scale(zz: float) -> float:
            return ref / (probe.apex_radius_mm + max(zz, 0.0))
        return x.astype(np.float32), z.astype(np.float32), xb.astype(np.float32), field, scale
    c0, c1 = round(cols * 0.15), round(cols * 0.85)
    top, bottom = round(rows * 0.03), round(rows * 0.97)
    mmpp = probe.width_mm / (c1 - c0)
    x = (xx - (c0 + c1 - 1) / 2) * mmpp
    z = (yy - top) * mmpp
    field = (xx >= c0) & (xx < c1) & (yy >= top) & (yy < bottom)
    return x, z, x.copy(), field, lambda zz: 1.0


def probe_to_pixel(probe: Probe, rows: int, cols: int, x: float, z: float) -> tuple[int, int]:
    """(row, column) of the probe-coordinate point (x lateral, z depth, mm) in an image of this matrix."""
    if probe.half_angle:
        top, bottom = 0.02 * rows, 0.99 * rows
        mmpp = probe.depth_mm / (bottom - top)
        apex_r = top - probe.apex_radius_mm / mmpp
        r = probe.apex_radius_mm + z
        theta = x / r
        return round(apex_r + r / mmpp * math.cos(theta)), round(cols / 2 + r / mmpp * math.sin(theta))
    c0, c1 = round(cols * 0.15), round(cols * 0.85)
    mmpp = probe.width_mm / (c1 - c0)
    return round(rows * 0.03 + z / mmpp), round((c0 + c1 - 1) / 2 + x / mmpp)


def linear_pixel_spacing(rows: int, cols: int) -> float:
    """Pixel spacing (mm) of a linear-array image of this matrix."""
    return LINEAR.width_mm / (round(cols * 0.85) - round(cols * 0.15))


def sector_pixel_spacing(probe: Probe, rows: int) -> float:
    """Pixel spacing (mm) of a fan image of this matrix."""
    return probe.depth_mm / (0.97 * rows)


# --------------------------------------------------------------------------- scenes


def _abdominal_wall(c: _Canvas) -> None:
    c.band(0, 2.5, 1.1)  # skin
    c.band(2.5, 14, 0.45)  # subcutaneous fat
    c.band(14, 22, 0.3)  # rectus / oblique muscles
    c.striations((c.z >= 14) & (c.z < 22), 2.5, 2.2)
    c.band(22, 23.5, 1.1)  # peritoneal line


def _liver(c: _Canvas, t: float) -> None:
    """Liver parenchyma with portal veins (bright walls), hepatic veins and the diaphragm."""
    c.echo[c.z >= 23.5] = 0.55
    for px, pz, a, b in ((-25 + t, 70, 8, 5.5), (18, 88, 6, 4.5), (-5, 105, 4.5, 3.5), (35 + t, 60, 4, 3)):
        c.ellipse(px, pz, a, b, 0.04, wall=1.3, wall_value=1.3, behind=1.15)
    for hx, hz, ang in ((40, 50, 35), (-40, 95, -40)):
        c.ellipse(hx + t, hz, 3.5, 14, 0.05, ang)
    d = c.dist(0, 235, 150, 100)  # diaphragm: a bright dome at the back of the liver
    c.echo[(d > 1.0) & (d <= 1.09)] = 1.6
    c.echo[d <= 1.0] = 0.35  # mirror-image/lung artifact beyond the diaphragm


def _kidney(c: _Canvas, cx: float, cz: float, t: float) -> None:
    """Renal long axis: bright perirenal fat, darker cortex, hypoechoic pyramids, bright central sinus."""
    ang = 12.0
    c.ellipse(cx, cz, 62 + t, 31, 0.95, ang)  # perirenal fat
    c.ellipse(cx, cz, 52 + t, 23, 0.32, ang, wall=0.8, wall_value=1.3)  # cortex + capsule
    a = math.radians(ang)
    for k in (-0.62, -0.3, 0.0, 0.3, 0.62):
        for side in (-1, 1):
            px = cx + k * 42 * math.cos(a) - side * 13 * math.sin(a)
            pz = cz + k * 42 * math.sin(a) + side * 13 * math.cos(a)
            c.ellipse(px, pz, 5.0, 4.0, 0.2, ang)
    c.ellipse(cx, cz, 36 + t, 9, 1.35, ang)  # renal sinus fat
    c.ellipse(cx + 3, cz + 2, 10, 2.5, 0.08, ang)  # renal pelvis (a little urine)


def _scene_abdomen(c: _Canvas, t: float) -> None:
    _abdominal_wall(c)
    _liver(c, t)
    c.echo[(c.dist(60, 120, 200, 200) > 1) & (c.z > 23.5)] = 0.55
    _kidney(c, 65, 128, t * 0.5)


def _scene_gallbladder(c: _Canvas, t: float) -> None:
    _abdominal_wall(c)
    _liver(c, t)
    # pear-shaped gallbladder: fundus (round) + body tapering to the neck, anechoic with a thin bright wall
    c.ellipse(-8, 78, 40 + t, 17, 0.02, -12, wall=1.4, wall_value=1.25, behind=1.7)
    c.ellipse(-45, 68, 14, 8, 0.02, -25, wall=1.2, wall_value=1.2)
    c.ellipse(-58, 80, 6, 4.5, 0.03, wall=1.2, wall_value=1.3)  # portal vein at the neck


def _scene_kidney(c: _Canvas, t: float, left: bool) -> None:
    _abdominal_wall(c)
    c.echo[c.z >= 23.5] = 0.6 if left else 0.55  # spleen (left) or liver (right) as the acoustic window
    if not left:
        c.ellipse(-45, 45, 4, 3.5, 0.05, wall=1.2)
    d = c.dist(-10 if left else 10, 200, 170, 125)
    c.echo[(d > 1.0) & (c.z > 55)] = 0.4  # posterior: psoas / quadratus muscle
    _kidney(c, 0, 92, t)


def _scene_bladder(c: _Canvas, t: float) -> None:
    _abdominal_wall(c)
    c.echo[c.z >= 23.5] = 0.45
    d = (np.abs(c.x / 62) ** 3 + np.abs((c.z - 72 - t) / 40) ** 3)  # a rounded box
    c.echo[(d > 1) & (d <= 1.13)] = 1.2
    c.echo[d <= 1] = 0.02
    c.shadow(0, 72, 50, 1.6)
    c.ellipse(0, 128, 22, 14, 0.5, wall=1.0, wall_value=0.9)  # prostate / cervix behind


def _uterus(c: _Canvas, cx: float, cz: float, scale: float, ang: float, t: float, gestation: bool) -> None:
    c.ellipse(cx, cz, 44 * scale, 24 * scale, 0.62, ang, wall=1.5 * scale, wall_value=0.9)  # myometrium
    c.ellipse(cx - 40 * scale * math.cos(math.radians(ang)), cz - 40 * scale * math.sin(math.radians(ang)),
              20 * scale, 13 * scale, 0.62, ang)  # cervix
    if gestation:
        inner = c.ellipse(cx + 4 * scale, cz, 19 * scale + t, 14 * scale, 0.02, ang, wall=3.0 * scale,
                          wall_value=1.4, behind=1.5)  # gestational sac with its bright decidual ring
        d_yolk = c.dist(cx + 12 * scale, cz - 4 * scale, 3.0 * scale, 3.0 * scale)
        c.echo[(d_yolk > 0.55) & (d_yolk <= 1.0) & inner] = 1.3  # yolk sac: a small ring
        c.ellipse(cx - 2 * scale, cz + 6 * scale, 6.5 * scale, 3.2 * scale, 0.75, ang + 20)  # embryo
    else:
        c.ellipse(cx, cz, 30 * scale, 3.2 * scale, 1.35, ang)  # endometrial stripe
        c.ellipse(cx, cz, 30 * scale, 0.9 * scale, 0.6, ang)  # its central line


def _scene_pelvis_ta(c: _Canvas, t: float, gestation: bool) -> None:
    _abdominal_wall(c)
    c.echo[c.z >= 23.5] = 0.42
    d = (np.abs((c.x + 10) / 58) ** 3 + np.abs((c.z - 50) / 26) ** 3)
    c.echo[(d > 1) & (d <= 1.12)] = 1.2
    c.echo[d <= 1] = 0.02  # bladder as the acoustic window
    c.shadow(-10, 50, 45, 1.5)
    _uterus(c, 8, 100, 1.0, -8, t, gestation)


def _scene_pelvis_tv(c: _Canvas, t: float, gestation: bool) -> None:
    c.echo[:] = 0.42
    _uterus(c, 0, 42, 0.95, 18, t, gestation)
    if not gestation:
        c.ellipse(-48, 62, 16, 11, 0.45)  # ovary with follicles
        for fx, fz, r in ((-52, 60, 3.5), (-44, 66, 2.8), (-50, 67, 2.2), (-42, 58, 2.5)):
            c.ellipse(fx, fz, r, r, 0.02, behind=1.2)


def _scene_fetal_head(c: _Canvas, t: float) -> None:
    _abdominal_wall(c)
    c.echo[c.z >= 23.5] = 0.02  # amniotic fluid
    c.band(24, 42, 0.75, wave=2.0, period=70)  # anterior placenta
    c.shadow(0, 40, 200, 1.3)
    c.ellipse(5, 95, 46 + t, 38, 0.28, wall=3.5, wall_value=1.7)  # skull (BPD plane) and brain
    c.ellipse(5, 95, 40, 0.9, 1.1)  # midline falx
    c.ellipse(-12, 95, 8, 3.5, 0.05)  # cavum septi pellucidi
    c.ellipse(18, 88, 9, 6, 0.45)  # thalami
    c.ellipse(18, 102, 9, 6, 0.45)


def _scene_fetal_body(c: _Canvas, t: float) -> None:
    _abdominal_wall(c)
    c.echo[c.z >= 23.5] = 0.02
    c.band(24, 40, 0.75, wave=2.0, period=70)
    c.ellipse(0, 95, 62, 30, 0.4, -6, wall=1.5, wall_value=0.9)  # fetal trunk, sagittal
    c.ellipse(-25, 90, 15, 12, 0.05)  # stomach bubble
    for k in range(13):  # spine: a curved double row of bright ossification centres with shadows
        sx = -52 + k * 8.5
        sz = 114 + 0.004 * (sx ** 2) - 0.05 * sx
        for dz in (0.0, 6.0):
            c.ellipse(sx, sz + dz, 2.6, 2.0, 1.8, behind=0.3)


def _scene_testis(c: _Canvas, t: float) -> None:
    c.band(0, 1.2, 1.1)
    c.band(1.2, 5, 0.55)  # scrotal wall layers
    c.echo[c.z >= 5] = 0.06  # a little fluid around the testis outlines it
    c.ellipse(2, 24, 21 + t, 13.5, 0.62, wall=0.6, wall_value=1.0, behind=1.1)  # homogeneous testis + tunica
    c.ellipse(4, 33, 9, 1.4, 1.2, -6)  # mediastinum testis
    c.ellipse(-19, 12, 7, 5, 0.45, 30)  # epididymal head


def _scene_thyroid(c: _Canvas, t: float, shift: float) -> None:
    """Transverse neck: strap muscles, two lobes joined by the isthmus over the trachea, carotids, jugulars.

    ``shift`` (mm) is the neck position under the middle of the probe."""
    c.x, c.xb = c.x + shift, c.xb + shift
    c.band(0, 1.2, 1.1)
    c.band(1.2, 4.5, 0.5)
    c.echo[c.z >= 4.5] = 0.4
    c.ellipse(0, 7.5, 24, 3.2, 0.25)  # strap muscles
    for s in (-1, 1):
        c.ellipse(25 * s, 9, 12, 5, 0.25, -20 * s)  # sternocleidomastoid
        c.striations(c.dist(25 * s, 9, 12, 5, -20 * s) <= 1, 1.6, 2.0)
        c.ellipse(15 * s, 20, 10.5 + t, 8.5, 0.9)  # thyroid lobes: brighter and homogeneous
        c.ellipse(29 * s, 21, 4.2, 4.2, 0.02, wall=0.5, wall_value=1.3, behind=1.35)  # common carotid
        c.ellipse(31 * s, 13, 5.5, 2.8, 0.03)  # internal jugular vein
        c.ellipse(14 * s, 36, 8, 3.5, 0.3)  # longus colli
    c.ellipse(0, 12, 13, 2.8, 0.9)  # isthmus
    c.ellipse(7, 32, 4.5, 3.8, 0.3, wall=0.7, wall_value=0.8)  # oesophagus
    c.ellipse(7, 32, 1.6, 1.0, 1.1)
    d = c.dist(0, 25, 10, 9)  # trachea: bright anterior wall, then air shadow with reverberations
    c.echo[(d <= 1.25) & (d > 0.8) & (c.z < 25)] = 1.5
    band = (np.abs(c.x) < 8 - 0.1 * np.maximum(c.z - 25, 0)) & (c.z > 21)
    c.echo[band] = 0.05
    c.echo[band & (np.mod(c.z - 16.5, 4.5) < 0.8) & (c.z < 42)] = 0.8


def _scene_carotid(c: _Canvas, t: float) -> None:
    """Long axis of the common carotid, bulb and internal/external carotid arteries."""
    c.band(0, 1.2, 1.1)
    c.band(1.2, 4, 0.5)
    c.echo[c.z >= 4] = 0.42
    c.band(4, 12, 0.25, wave=1.0, period=60)  # sternocleidomastoid
    c.striations((c.z >= 4) & (c.z < 12), 1.5, 2.2)
    c.tube(lambda x: 16 + 0.0 * x, lambda x: np.full_like(x, 3.6), -30, 40, 0.03)  # jugular vein (above)
    cca = (lambda x: 24 + 0.0 * x)
    c.tube(cca, lambda x: 3.4 + 1.6 * np.exp(-((x - 4) / 6) ** 2), -30, 10, 0.02)  # CCA + bulb
    c.tube(lambda x: 25.5 + 0.08 * (x - 8), lambda x: np.full_like(x, 2.9), 8, 30, 0.02)  # ICA (deeper)
    c.tube(lambda x: 20.5 - 0.12 * (x - 8), lambda x: np.full_like(x, 2.1), 9, 30, 0.02)  # ECA
    for k in range(4):  # transverse processes: bright caps with shadows
        c.ellipse(-20 + k * 14, 40, 4.5, 1.5, 1.6, behind=0.15)


def _scene_leg_veins(c: _Canvas, t: float) -> None:
    """Long axis of the femoral vein (deep, larger) and artery (superficial, thick bright walls) in muscle."""
    c.band(0, 1.2, 1.1)
    c.band(1.2, 7, 0.5)
    c.echo[c.z >= 7] = 0.33
    c.striations(c.z >= 7, 2.2, 2.2)
    c.band(7, 7.8, 1.1)  # fascia
    c.tube(lambda x: 16 + 0.05 * x, lambda x: np.full_like(x, 3.2), -30, 30, 0.03, wall=1.0, wall_value=1.4)
    c.tube(lambda x: 25 + 0.07 * x, lambda x: np.full_like(x, 5.5 + t * 0.1), -30, 30, 0.02, wall=0.5)
    c.band(40, 42, 1.5)  # femoral cortex
    c.trans[c.z > 42] *= 0.15


def _scene_breast(c: _Canvas, t: float) -> None:
    c.band(0, 1.5, 1.15)  # skin
    c.band(1.5, 12, 0.3, wave=1.5, period=18)  # subcutaneous fat lobules
    lig = np.abs(np.sin((c.x + 3 * np.sin(c.z / 3)) * (2 * math.pi / 16))) < 0.08
    c.echo[lig & (c.z > 1.5) & (c.z < 12)] = 1.0  # Cooper ligaments
    c.band(12, 25, 0.9, wave=2.5, period=30)  # fibroglandular layer
    c.band(25, 28, 0.3, wave=1.0, period=30)  # retromammary fat
    c.band(28, 37, 0.35)  # pectoralis major
    c.striations((c.z >= 28) & (c.z < 37), 1.8, 2.2)
    c.band(37, 38.2, 1.3)  # pleural line
    for rx in (-14.0, 16.0):
        c.ellipse(rx, 40, 7, 2.5, 1.5, behind=0.12)  # ribs: bright cap, posterior shadow
    c.ellipse(6 + t, 17, 4.0, 3.2, 0.02, wall=0.4, wall_value=1.2, behind=1.7)  # a simple cyst


def _scene_infant_hip(c: _Canvas, t: float) -> None:
    """Graf coronal view: horizontal iliac line, bony acetabular roof, cartilaginous femoral head, labrum."""
    c.band(0, 1.2, 1.1)
    c.band(1.2, 4, 0.5)
    c.echo[c.z >= 4] = 0.35
    c.striations(c.z >= 4, 2.0, 2.0)  # gluteal muscles
    c.band(13, 14, 1.2)
    ilium = (c.x < -2) & (np.abs(c.z - 15) < 1.0)
    c.echo[ilium] = 1.8
    c.trans[(c.x < -2) & (c.z > 16)] *= 0.12
    roof = (c.x >= -2) & (c.x < 6) & (np.abs(c.z - (15 + (c.x + 2) * 1.6)) < 1.0)
    c.echo[roof] = 1.8
    c.trans[(c.x >= -2) & (c.x < 6) & (c.z > 16 + (c.x + 2) * 1.6)] *= 0.12
    head = c.ellipse(10 + t * 0.3, 24, 10.5, 10.5, 0.1)  # hyaline cartilage: nearly anechoic
    rng = np.random.default_rng(7)  # the sparse dots of the head's vascular canals, the same every frame
    dots = head & (rng.random(head.shape) < 0.01)
    c.echo[dots] = 1.0
    c.ellipse(7, 12.5, 4.0, 2.2, 1.2, -30)  # labrum
    c.band(35, 37.5, 1.6)  # femoral metaphysis
    c.trans[(c.z > 37.5)] *= 0.15


def _scene_neonatal_head(c: _Canvas, t: float, sagittal: bool) -> None:
    c.echo[:] = 0.32
    if sagittal:
        d = c.dist(0, 42, 36, 20)
        c.echo[(d <= 1) & (d > 0.78) & (c.z < 44)] = 0.12  # corpus callosum
        c.echo[(d <= 1.2) & (d > 1.0) & (c.z < 44)] = 1.2  # pericallosal sulcus
        c.ellipse(0, 46, 26, 5, 0.06, 0)  # cavum / ventricle
        c.ellipse(18, 72, 13, 11, 1.1)  # cerebellar vermis: echogenic
        c.ellipse(14, 62, 4, 2.5, 0.05)  # fourth ventricle
        c.ellipse(-4, 58, 10, 7, 0.45)  # thalamus
        for k in range(7):  # sulci radiating over the hemisphere
            a = math.radians(-70 + k * 22)
            line = np.abs((c.x * math.cos(a) - (c.z - 45) * math.sin(a))) < 0.8
            c.echo[line & (c.dist(0, 45, 60, 48) > 0.55) & (c.dist(0, 45, 60, 48) < 0.95)] = 1.0
    else:
        c.echo[(np.abs(c.x) < 0.9) & (c.z < 38)] = 1.2  # interhemispheric fissure
        for s in (-1, 1):
            c.ellipse(8 * s, 38, 6.5 + t * 0.2, 2.4, 0.04, 35 * s)  # frontal horns of the lateral ventricles
            c.ellipse(9 * s, 41, 2.5, 2.0, 1.2)  # choroid plexus
            c.ellipse(30 * s, 48, 14, 1.0, 1.2, -35 * s)  # sylvian fissures
            c.ellipse(14 * s, 55, 9, 7, 0.45)  # thalami / basal ganglia
    d = c.dist(0, 120, 75, 40)  # skull base: a bright arc with shadow
    c.echo[(d <= 1.0) & (d > 0.8)] = 1.7
    c.trans[d <= 0.8] *= 0.2


def _scene_bowel(c: _Canvas, t: float) -> None:
    """Right lower quadrant with graded compression: muscle layers, bowel loops with bright gas centres."""
    c.band(0, 1.2, 1.1)
    c.band(1.2, 6, 0.45)
    c.band(6, 12, 0.28)
    c.striations((c.z >= 6) & (c.z < 12), 1.5, 2.2)
    c.band(12, 13, 1.1)
    c.echo[c.z >= 13] = 0.8  # mesenteric fat
    for bx, bz, r in ((-18, 24, 7.5), (5, 22, 6), (20, 30, 8), (-5, 36, 7)):
        c.ellipse(bx + t, bz, r, r * 0.8, 0.2)  # hypoechoic muscular wall
        c.ellipse(bx + t, bz, r * 0.45, r * 0.35, 1.5, behind=0.25)  # gas / mucosa: bright with dirty shadow
    c.tube(lambda x: 45 + 0.0 * x, lambda x: np.full_like(x, 2.5), -30, 30, 0.03)  # iliac vessels


# --------------------------------------------------------------------------- dispatch


_LINEAR_SCENES = {"thyroid", "thyroid-left", "carotid", "veins", "breast", "testis", "hip", "bowel"}


def probe_for(scene: str) -> Probe:
    """The transducer a scene is scanned with (linear array, convex, endocavitary or fontanelle sector)."""
    if scene in _LINEAR_SCENES:
        return LINEAR
    if scene.endswith("-tv"):
        return ENDOCAVITY
    if scene.startswith("head"):
        return FONTANELLE
    return CONVEX


_SCENES: dict[str, Callable[[_Canvas, float], None]] = {
    "abdomen": _scene_abdomen,
    "gallbladder": _scene_gallbladder,
    "kidney": lambda c, t: _scene_kidney(c, t, left=False),
    "kidney-left": lambda c, t: _scene_kidney(c, t, left=True),
    "bladder": _scene_bladder,
    "pelvis-ta": lambda c, t: _scene_pelvis_ta(c, t, gestation=False),
    "pelvis-tv": lambda c, t: _scene_pelvis_tv(c, t, gestation=False),
    "ob-ta": lambda c, t: _scene_pelvis_ta(c, t, gestation=True),
    "ob-tv": lambda c, t: _scene_pelvis_tv(c, t, gestation=True),
    "fetal-head": _scene_fetal_head,
    "fetal-body": _scene_fetal_body,
    "testis": _scene_testis,
    # transverse: the patient's right (-x) on the image left; each series centres its lobe
    "thyroid": lambda c, t: _scene_thyroid(c, t, shift=-12.0),
    "thyroid-left": lambda c, t: _scene_thyroid(c, t, shift=8.0),
    "carotid": _scene_carotid,
    "veins": _scene_leg_veins,
    "breast": _scene_breast,
    "hip": _scene_infant_hip,
    "head-cor": lambda c, t: _scene_neonatal_head(c, t, sagittal=False),
    "head-sag": lambda c, t: _scene_neonatal_head(c, t, sagittal=True),
    "bowel": _scene_bowel,
}

# Sweep phases: frames cycle through this many slightly different cuts of the organ (bounded cache).
PHASES = 4


@functools.lru_cache(maxsize=8)
def _echo_map(scene: str, rows: int, cols: int, phase: int) -> tuple[np.ndarray, np.ndarray]:
    """(echo × transmission × depth gain, field mask) for one sweep phase; cached, read-only."""
    probe = probe_for(scene)
    x, z, xb, field, scale = _coordinates(probe, rows, cols)
    c = _Canvas(x, z, xb, scale, 0.5)
    t = 2.0 * math.sin(phase * 2 * math.pi / PHASES)  # the organ's cut grows and shrinks through the sweep
    _SCENES[scene](c, t)
    depth = np.clip(z / probe.depth_mm, 0, 1)
    gain = np.exp(-1.0 * depth) * 1.5 + 0.3  # attenuation with depth, partly compensated by TGC
    level = np.where(field, c.echo * np.minimum(c.trans, 3.0) * gain * 95.0, 0.0).astype(np.float32)
    for a in (level, field):
        a.flags.writeable = False
    return level, field


def ultrasound(scene: str, rows: int, cols: int, *, seed: int, frame: int) -> np.ndarray:
    """A B-mode frame (uint8) of a series' scene (its catalog ``scene``, :class:`generators.terms.Scene`): echo map ×
    Rayleigh speckle, black outside the field."""
    if scene not in _SCENES:
        raise ValueError(f"no ultrasound scene {scene!r}")
    level, field = _echo_map(scene, rows, cols, frame % PHASES)
    rng = np.random.default_rng(seed * 1000 + frame)
    speckle = rng.rayleigh(1.0, (rows, cols)).astype(np.float32)
    img = np.clip(level * speckle, 0, 255)
    img[~field] = 0
    return img.astype(np.uint8)
