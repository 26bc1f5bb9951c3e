"""Synthetic anatomy: an analytic body model evaluated on image planes, turned into modality pixels.

The body is a list of axis-aligned ellipsoids / elliptic cylinders / shells painted in order (the
painter's algorithm: later shapes overwrite earlier ones) in patient coordinates (DICOM LPS, mm:
+x patient left, +y posterior, +z head; z = 0 at the umbilicus). Because every shape is axis
aligned and every plane is AX / COR / SAG, a shape's footprint on a plane is separable: the cost of
painting it is proportional to its bounding box, not to the image, so a 512² label map costs about a
millisecond (:mod:`generators.dicom.raster` paints them). A series evaluates the model at a bounded number of *levels* along its normal
(anatomy changes slowly along z), maps labels to modality intensities through a lookup table, and
slices through the levels adding cheap per-slice noise (see :mod:`generators.dicom.writer`).

Projection images (DX/CR and the whole-body bone scan) integrate the same model along the beam;
MG is a 2-D model. Ultrasound scenes live in :mod:`generators.dicom.phantoms_us` and the organ-specific
nuclear medicine studies in :mod:`generators.dicom.phantoms_nm`. Regions pick a model: the sexless
body, the body with arms at the sides (shoulder), with breasts and a uterus (female) or a prostate
(male), the arm (elbow to fingertips) or the foot.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from PIL import Image

from generators.dicom import anatomy_cache
from generators.dicom.raster import Body, Grid
from generators.terms import ContrastPhase, Laterality, Plane, Weighting


class Tissue(IntEnum):
    """Material labels of the body model (uint8 label map values)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    FLUID = 3
    BONE = 4
    MARROW = 5
    LUNG = 6
    LIVER = 7
    SPLEEN = 8
    KIDNEY = 9
    BLOOD = 10
    GREY = 11
    WHITE = 12
    CARTILAGE = 13
    LIGAMENT = 14
    DISC = 15
    BOWEL = 16
    GLAND = 17
    URINE = 18
    MESENTERY = 19  # visceral fat streaked with vessels and bowel: between fat and soft tissue


N_TISSUES = len(Tissue)
T = Tissue


@dataclass(frozen=True, slots=True)
class Shape:
    """An axis-aligned ellipsoid (``radii``) painted with ``tissue``.

    ``clip`` bounds it along z (an elliptic cylinder is an ellipsoid with a huge z radius and a clip);
    ``inner`` makes it a shell (only the part outside the ellipsoid scaled by ``inner``);
    ``period`` = (pitch, duty) keeps only z where ``(z - center_z) mod pitch < duty`` (ribs, vertebrae);
    ``taper`` = (scale at clip[0], scale at clip[1]) makes a clipped cylinder a truncated cone whose x/y
    radii change linearly along z (limb outlines without stair steps); ``power`` > 2 squares the ellipsoid
    off into a superellipsoid |x/a|^p + |y/b|^p + |z/c|^p <= 1 (vertebral bodies: flat endplates, round corners).
    """

    tissue: Tissue
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    clip: tuple[float, float] = (-math.inf, math.inf)
    inner: float = 0.0
    period: tuple[float, float] | None = None
    taper: tuple[float, float] | None = None
    power: float = 2.0  # superellipsoid exponent: 2 = ellipsoid, 3-4 = a box with rounded corners


def _cyl(tissue: Tissue, x: float, y: float, rx: float, ry: float, z0: float, z1: float, **kw: object) -> Shape:
    return Shape(tissue, (x, y, (z0 + z1) / 2), (rx, ry, 1e6), clip=(z0, z1), **kw)  # type: ignore[arg-type]


def _ell(tissue: Tissue, x: float, y: float, z: float, rx: float, ry: float, rz: float, **kw: object) -> Shape:
    return Shape(tissue, (x, y, z), (rx, ry, rz), **kw)  # type: ignore[arg-type]


def _bone(x: float, y: float, z: float, rx: float, ry: float, rz: float, cortex: float = 3.0) -> list[Shape]:
    """A bone: cortical ellipsoid with a marrow core."""
    return [_ell(T.BONE, x, y, z, rx, ry, rz),
            _ell(T.MARROW, x, y, z, max(rx - cortex, 1), max(ry - cortex, 1), max(rz - cortex, 1))]


def _long_bone(x: float, y: float, r: float, z0: float, z1: float, cortex: float = 3.0) -> list[Shape]:
    return [_cyl(T.BONE, x, y, r, r, z0, z1), _cyl(T.MARROW, x, y, r - cortex, r - cortex, z0 + 2, z1 - 2)]


def _union(*bones: list[Shape]) -> list[Shape]:
    """One bone made of several parts: all cortices first, then all marrow, so no cortex line runs inside it."""
    parts = [shape for bone in bones for shape in bone]
    return [p for p in parts if p.tissue != T.MARROW] + [p for p in parts if p.tissue == T.MARROW]


def _taper(tissue: Tissue, x: float, y: float, profile: list[tuple[float, float]],
           shrink: float = 0.0) -> list[Shape]:
    """A limb outline: truncated cones whose radius follows ``profile`` [(z, r), ...] (z descending)."""
    out = []
    for (z0, r0), (z1, r1) in zip(profile, profile[1:]):
        (lo, r_lo), (hi, r_hi) = sorted(((z0, r0 - shrink), (z1, r1 - shrink)))
        base = max(r_lo, r_hi)
        out.append(Shape(tissue, (x, y, (lo + hi) / 2), (base, base * 0.94, 1e6), clip=(lo, hi),
                         taper=(r_lo / base, r_hi / base)))
    return out


_LEG_PROFILE = [(-230.0, 86.0), (-450.0, 76.0), (-580.0, 62.0), (-640.0, 56.0), (-700.0, 54.0), (-780.0, 56.0),
                (-900.0, 42.0), (-1000.0, 34.0)]


# The foot in its own frame (mm): x lateral, a toward the toes, h up; origin at the top of the talar dome.
# Entries are (tissue, centre, radii, cortex); cortex > 0 makes a bone (cortical shell + marrow).
_FOOT: list[tuple[Tissue, tuple[float, float, float], tuple[float, float, float], float]] = [
    (T.FAT, (2, 95, -40), (46, 82, 22), 0), (T.FAT, (2, 5, -34), (33, 78, 34), 0),  # forefoot, hindfoot
    (T.MUSCLE, (0, 40, -50), (30, 80, 10), 0),  # plantar muscles
    (T.BONE, (0, 6, -14), (15, 27, 14), 2.0),  # talus
    (T.BONE, (3, -24, -42), (17, 38, 17), 2.0),  # calcaneus
    (T.BONE, (-10, 36, -22), (13, 7, 11), 1.5),  # navicular
    (T.BONE, (16, 42, -36), (11, 12, 10), 1.5),  # cuboid
    (T.BONE, (-18, 52, -28), (7, 8, 10), 1.5), (T.BONE, (-6, 53, -27), (5, 8, 9), 1.5),  # cuneiforms
    (T.BONE, (5, 52, -30), (5, 8, 9), 1.5),
]
for _mx, _a0, _a1, _r, _h in ((-19, 60, 122, 6.5, -37), (-7, 63, 134, 4.5, -40), (4, 61, 130, 4.2, -42),
                              (14, 57, 122, 4.0, -44), (23, 50, 108, 4.2, -46)):  # metatarsals: base, shaft, head
    _FOOT += [(T.BONE, (_mx, _a0 + 4, _h), (_r + 2, 5, _r + 2), 1.2),
              (T.BONE, (_mx, (_a0 + _a1) / 2, _h), (_r, (_a1 - _a0) / 2, _r), 1.2),
              (T.BONE, (_mx, _a1 - 4, _h - 1), (_r + 1.5, 5, _r + 1.5), 1.2)]
for _mx, _a, _lengths, _r in ((-20, 126, (26, 18), 5.5), (-7, 138, (24, 13, 9), 3.6), (4, 134, (22, 12, 9), 3.4),
                             (14, 126, (20, 11, 8), 3.2), (23, 112, (18, 10, 8), 3.2)):  # phalanges
    for _k, _len in enumerate(_lengths):
        _FOOT.append((T.BONE, (_mx, _a + _len / 2, -40 - 2 * _k), (_r, _len / 2 - 1, _r * 0.9), 1.0))
        _a += _len + 2
_FOOT += [(T.BONE, (-23, 120, -45), (3, 3, 3), 1.0), (T.BONE, (-15, 120, -45), (3, 3, 3), 1.0)]  # sesamoids


def _foot_shapes(place: object) -> list[Shape]:
    """The foot's shapes placed by ``place((x, a, h), (rx, ra, rh)) -> (centre, radii)`` in model coordinates."""
    out: list[Shape] = []
    for tissue, centre, radii, cortex in _FOOT:
        c, r = place(centre, radii)  # type: ignore[operator]
        out.append(Shape(tissue, c, r))
        if cortex:
            out.append(Shape(T.MARROW, c, tuple(max(v - cortex, 0.8) for v in r)))  # type: ignore[arg-type]
    return out


def _leg(side: float) -> list[Shape]:
    """One leg from hip to ankle with a detailed knee; ``side`` -1 = patient right (-x), +1 = left."""
    x = 95.0 * side
    lat = 22.0 * side  # toward the lateral side of this leg
    s = [_ell(T.FAT, x, 4, -232, 86, 81, 34), _ell(T.MUSCLE, x, 12, -232, 76, 71, 28)]  # gluteal fold
    s += _taper(T.FAT, x, 4, _LEG_PROFILE) + _taper(T.MUSCLE, x, 12, _LEG_PROFILE[:2], shrink=10)
    s += _taper(T.MUSCLE, x, 14, _LEG_PROFILE[1:3], shrink=12)
    s += _taper(T.MUSCLE, x, 22, [(-700.0, 40.0), (-780.0, 46.0), (-900.0, 30.0), (-990.0, 20.0)])  # calf
    s += _taper(T.MUSCLE, x + 12 * side, -8, [(-700.0, 30.0), (-800.0, 30.0), (-900.0, 22.0), (-980.0, 12.0)])  # shin
    s += [_ell(T.FLUID, x, -22, -598, 32, 7, 30)]  # suprapatellar recess
    s += [_ell(T.FLUID, x, 12, -672, 41, 33, 5)]  # joint fluid between the articular cartilages
    condyles = (x - lat * 0.9, x + lat * 0.9)  # medial and lateral
    # menisci: C-shaped wedges, thick at the capsule and thinning to a free edge, so a sagittal cut shows a
    # dark triangle at each horn: a ring cylinder hollowed out by two cones meeting at the free edge
    s += [_cyl(T.LIGAMENT, x, 12, 41, 33, -677, -667), _cyl(T.FLUID, x, 12, 41 * 0.58, 33 * 0.58, -677, -667),
          Shape(T.FLUID, (x, 12, -669.5), (41, 33, 1e6), clip=(-672, -667), taper=(0.58, 0.97)),
          Shape(T.FLUID, (x, 12, -674.5), (41, 33, 1e6), clip=(-677, -672), taper=(0.97, 0.58))]
    s += [_ell(T.CARTILAGE, cx, 12, -645, 24, 33, 27) for cx in condyles]
    s += [Shape(T.CARTILAGE, (x, 12, -687), (40, 33, 12), power=3.0),  # tibial plateau cartilage
          _ell(T.CARTILAGE, x, -39, -628, 27, 13, 26)]  # patellar cartilage
    # metaphyses flare smoothly from the shafts (cones) instead of sitting on them as separate balls
    femur_flare = [Shape(T.BONE, (x, 9, -605), (34, 27, 1e6), clip=(-640, -570), taper=(1.0, 0.56)),
                   Shape(T.MARROW, (x, 9, -605), (31.5, 24.5, 1e6), clip=(-640, -572), taper=(1.0, 0.53))]
    tibia_flare = [Shape(T.BONE, (x, 13, -722), (36, 29, 1e6), clip=(-760, -686), taper=(0.55, 1.0)),
                   Shape(T.MARROW, (x, 13, -722), (33.5, 26.5, 1e6), clip=(-758, -688), taper=(0.52, 1.0))]
    s += _union(_long_bone(x, 6, 14, -590, -230), femur_flare,  # femur
                *(_bone(cx, 12, -645, 21.5, 30.5, 24.5, cortex=2) for cx in condyles))
    plateau = [Shape(T.BONE, (x, 12, -688), (38, 31, 10), power=3.0),
               Shape(T.MARROW, (x, 12, -688), (36, 29, 8), power=3.0)]
    s += _union(plateau, tibia_flare,  # tibia
                _long_bone(x, 15, 14, -990, -700), _bone(x, 15, -972, 22, 20, 22, cortex=2),
                _bone(x - 16 * side, 15, -1000, 7, 10, 14, cortex=2))  # medial malleolus
    s += _union(_bone(x + 34 * side, 24, -708, 10, 10, 11, cortex=2),  # fibula, lateral malleolus
                _long_bone(x + 34 * side, 26, 7, -980, -712, cortex=2),
                _bone(x + 32 * side, 24, -1003, 8, 10, 17, cortex=2))
    s += _bone(x, -43, -628, 25, 10, 24, cortex=2)  # patella
    s += [_ell(T.FAT, x, 24, -650, 6, 14, 12)]  # intercondylar notch
    s += [_cyl(T.LIGAMENT, x - 2 * side, 24, 3.5, 4, -688, -652), _cyl(T.LIGAMENT, x + 3 * side, 8, 3, 3.5, -684, -655)]
    s += [_ell(T.FAT, x, -30, -674, 20, 12, 18)]  # Hoffa's fat pad
    s += [_ell(T.LIGAMENT, x, -47, -580, 22, 4.5, 30), _ell(T.LIGAMENT, x, -44, -678, 19, 4, 28)]  # tendons
    s += [_cyl(T.BLOOD, x + 4 * side, 42, 4, 4, -800, -450)]  # popliteal artery
    s += [_ell(T.LIGAMENT, x, 68, -960, 8, 5, 50)]  # Achilles tendon
    ox, oy, oz = x, 15.0, -995.0  # the ankle joint: the foot points anteriorly (-y)
    s += _foot_shapes(lambda c, r: ((ox + side * c[0], oy - c[1], oz + c[2]), (r[0], r[1], r[2])))
    return s


def _spine_offset(z: float) -> float:
    """Antero-posterior offset (mm, +y posterior) of the spinal axis at height z from the thoracolumbar axis:
    lumbar lordosis (the column bows forward around L3), thoracic kyphosis (backward around T7), the step
    forward into the narrower neck at the cervicothoracic junction and the cervical lordosis (C4-C5)."""
    return (-7.0 * math.exp(-(((z + 45.0) / 55.0) ** 2)) + 8.0 * math.exp(-(((z - 250.0) / 100.0) ** 2))
            - 40.0 / (1.0 + math.exp(-(z - 400.0) / 18.0)) - 4.0 * math.exp(-(((z - 470.0) / 40.0) ** 2)))


# (name, pitch mm, body half-height, half-width, half-depth): L5 up to T1, caudal to cranial. Lumbar bodies are
# tall and wide with thick discs; thoracic ones smaller with thin discs.
_LUMBAR = [(f"L{n}", 36.0, 12.5, 21.0, 16.0) for n in (5, 4, 3, 2, 1)]
_THORACIC = [(f"T{n}", 24.0 + 0.6 * n, 9.5 + 0.25 * n, 14.0 + 0.55 * n, 11.0 + 0.4 * n) for n in range(12, 0, -1)]
_CERVICAL = [*((f"C{n}", 17.0, 6.5, 10.0 + 0.2 * n, 8.0) for n in range(7, 2, -1)), ("C2", 22.0, 9.0, 10.0, 8.5)]
_VERTEBRAE: list[tuple[str, float, float, float, float]] = [*_LUMBAR, *_THORACIC]
CONUS_Z = 40.0  # the cord ends at L1; below it the cauda equina floats in CSF


def _thoracolumbar_spine(z_l5: float, y: float) -> list[Shape]:
    """Vertebrae L5 to T1 one by one along a lordotic/kyphotic curve: rounded-box bodies (cortex and
    marrow) separated by discs (dark annulus, bright nucleus on T2), pedicles, a neural arch around the
    CSF-filled canal, transverse and spinous processes; the cord down to the conus, then the cauda equina;
    below L5 the sacrum."""
    return _column(_VERTEBRAE, z_l5, y) + _sacrum(z_l5, y)


def _cervical_spine(y: float) -> list[Shape]:
    """T1 (repainted over the neck's soft tissue) and C7 to C2 continuing the column's curve, with the dens."""
    z_t1 = -92.0 + sum(v[1] for v in _VERTEBRAE[:-1])
    t1 = (*_VERTEBRAE[-1][:1], 19.0, *_VERTEBRAE[-1][2:])  # T1 to C7: the small cervical body sits close
    s = _column([t1, *_CERVICAL], z_t1, y)
    z_c2 = z_t1 + sum(v[1] for v in [t1, *_CERVICAL[:-1]])
    s += _bone(0, y + _spine_offset(z_c2) + 1, z_c2 + 16, 5, 5, 9, cortex=1.5)  # dens
    return s


def _column(vertebrae: list[tuple[str, float, float, float, float]], z_first: float, y: float) -> list[Shape]:
    """The vertebrae (see :data:`_VERTEBRAE`) stacked upward from a body centred at ``z_first``."""
    s: list[Shape] = []
    bodies: list[Shape] = []
    marrow: list[Shape] = []
    posterior: list[Shape] = []
    canal: list[Shape] = []
    z = z_first
    for k, (name, pitch, h, rx, ry) in enumerate(vertebrae):
        yc = y + _spine_offset(z)
        # squarer in the sagittal plane (flat endplates) than across (a rounded, kidney-like axial outline)
        bodies.append(Shape(T.BONE, (0, yc, z), (rx, ry, h), power=2.6))
        marrow.append(Shape(T.MARROW, (0, yc, z), (rx - 2.2, ry - 2.2, h - 1.6), power=2.6))
        if k + 1 < len(vertebrae):  # the disc above this body
            nxt = vertebrae[k + 1]
            zd = z + h + (pitch - h - nxt[2]) / 2
            gap = (pitch - h - nxt[2]) / 2 + 1.5
            yd = y + _spine_offset(zd)
            s += [Shape(T.LIGAMENT, (0, yd, zd), (rx - 0.5, ry - 0.5, gap), power=3.0),  # annulus fibrosus
                  Shape(T.DISC, (0, yd + 1.5, zd), (rx * 0.72, ry * 0.62, gap * 0.8), power=2.5)]  # nucleus
        lumbar, cervical = name[0] == "L", name[0] == "C"
        arch_y = yc + ry + 11
        spine_len = 17 if lumbar else 7 if cervical else 14  # spinous process half-length
        posterior += [
            Shape(T.BONE, (0, arch_y + 2, z + 2), (max(rx * 0.62, 11), 14 if not cervical else 11, h * 0.75),
                  inner=0.62),  # pedicles + laminae
            Shape(T.BONE, (0, arch_y + 8 + spine_len, z - 5), (4.5, spine_len, max(h * 0.6, 4.5)), power=3.0),
            Shape(T.MARROW, (0, arch_y + 10 + spine_len, z - 5), (2.5, spine_len - 4, max(h * 0.4, 2.5)), power=3.0),
            Shape(T.BONE, (-(rx + 8), arch_y - 2, z + 2), (13 if lumbar else 9, 5, 5)),  # transverse processes
            Shape(T.BONE, (rx + 8, arch_y - 2, z + 2), (13 if lumbar else 9, 5, 5)),
        ]
        # the canal follows the curve in short segments (no visible steps between levels)
        below = vertebrae[k - 1][1] if k else pitch  # segments meet halfway between neighbouring centres
        rise = abs(_spine_offset(z + pitch / 2) - _spine_offset(z - below / 2))  # steep at the junctions
        step = (below + pitch) / max(8, math.ceil(rise / 0.6))
        for lo in np.arange(z - below / 2, z + pitch / 2 - 0.01, step):
            hi = lo + step
            ay = y + _spine_offset((lo + hi) / 2) + ry + 11
            canal += [_cyl(T.FAT, 0, ay + 1, 12, 11, lo, hi),  # epidural fat
                      _cyl(T.FLUID, 0, ay, 10 if lumbar else 8, 8 if lumbar else 7, lo, hi)]  # thecal sac (CSF)
            if hi > CONUS_Z:
                canal.append(_cyl(T.WHITE, 0, ay - 0.5, 5, 4, max(lo, CONUS_Z), hi))  # cord
        lo, hi = z - below / 2, min(z + pitch / 2, CONUS_Z)
        if lo < hi:  # nerve roots of the cauda equina hang in the dependent (posterior) thecal sac
            ay = y + _spine_offset(z) + ry + 11
            canal += [_cyl(T.WHITE, dx, ay + dy, 0.9, 0.9, lo, hi) for dx, dy in ((-3.5, 3.0), (0.0, 4.5), (3.5, 3.0))]
        if name == "L1":
            canal.append(_ell(T.WHITE, 0, y + _spine_offset(CONUS_Z) + ry + 10.5, CONUS_Z, 3.5, 3, 10))  # conus
        z += pitch
    # discs first (the bodies' endplates overwrite their rims), then cortex, marrow, arches, canal contents
    return s + bodies + posterior + marrow + canal


def _sacrum(z_l5: float, y: float) -> list[Shape]:
    """The L5-S1 disc and the sacrum below a column whose L5 is centred at ``z_l5``."""
    canal: list[Shape] = []
    # sacrum: five fused segments curving back from the lumbosacral disc (sacral kyphosis), with the sacral
    # canal behind them and the alae either side
    zs = z_l5 - 36.0
    alae = (_bone(side * 38, y + 22, zs - 8, 30, 17, 28, cortex=2.5) for side in (-1, 1))
    sacrum = _union(*alae,
                    *(_bone(0, y + 4 + 10.5 * i, zs - 24 * i, 22 - 3.6 * i, 16 - 2 * i, 11 - 1.2 * i, cortex=2)
                      for i in range(5)))
    sacrum = [Shape(t.tissue, t.center, t.radii, power=3.0) if t.center[0] == 0 else t for t in sacrum]
    for zc in np.arange(zs + 12, zs - 84, -4.0):  # the sacral canal narrows and follows the curve down
        f = (zs - zc) / 24
        canal.append(_cyl(T.FLUID, 0, y + 27 + 10.5 * f, max(7 - 1.2 * f, 2.5), max(5 - 0.8 * f, 2), zc - 4, zc))
    disc = [Shape(T.LIGAMENT, (0, y + 2, zs + 18), (23, 16, 6.5), power=3.0),  # L5-S1 disc
            Shape(T.DISC, (0, y + 3.5, zs + 18), (17, 10, 5), power=2.5)]
    return disc + sacrum + canal


@functools.cache
def body_model() -> tuple[Shape, ...]:
    """The whole-body model (without arms: a CT patient holds them above the head)."""
    s: list[Shape] = []
    # torso: skin/subcutaneous fat, muscle wall, visceral fat
    # (the buttocks round the bottom of the trunk off instead of a flat cut)
    s += [_cyl(T.FAT, 0, 0, 170, 125, -215, 420), _ell(T.FAT, 0, 0, -215, 170, 125, 60),
          _cyl(T.MUSCLE, 0, 2, 157, 113, -215, 410), _ell(T.MUSCLE, 0, 2, -215, 157, 113, 50),
          _cyl(T.FAT, 0, 0, 141, 99, 140, 395), _cyl(T.MESENTERY, 0, 0, 141, 99, -215, 140),
          _ell(T.MESENTERY, 0, 0, -215, 141, 99, 38)]
    s += _leg(-1) + _leg(1)  # before the pelvis, so the hip joints and pelvic organs are painted over the thighs
    s += [_ell(T.FAT, 0, 0, 420, 185, 115, 45), _ell(T.MUSCLE, 0, 8, 418, 172, 100, 36)]  # shoulders, trapezius
    # chest
    s += [_cyl(T.BONE, 0, 2, 152, 110, 140, 390, inner=0.93, period=(27.0, 9.0))]  # ribs
    s += [_ell(T.LUNG, -72, 8, 275, 62, 82, 125), _ell(T.LUNG, 72, 8, 275, 62, 82, 125)]
    s += [_ell(T.MUSCLE, 22, -25, 215, 66, 56, 66), _ell(T.BLOOD, 22, -25, 218, 54, 44, 54)]  # heart
    s += [_ell(T.BLOOD, 8, -10, 300, 16, 16, 30), _cyl(T.BLOOD, 18, 42, 12, 12, -60, 290)]  # aorta
    s += [_cyl(T.AIR, 0, 0, 9, 8, 300, 520)]  # trachea
    s += [_cyl(T.BONE, 0, -102, 16, 7, 160, 335), _cyl(T.MARROW, 0, -102, 12, 4, 162, 333)]  # sternum
    s += [_cyl(T.BONE, -110, 75, 40, 5, 270, 400), _cyl(T.BONE, 110, 75, 40, 5, 270, 400)]  # scapulae
    s += [_ell(T.BONE, -90, 0, 405, 70, 6, 6), _ell(T.BONE, 90, 0, 405, 70, 6, 6)]  # clavicles
    # abdomen
    s += [_ell(T.LIVER, -68, -5, 95, 88, 78, 85), _ell(T.FLUID, -55, -55, 55, 15, 14, 28)]  # liver, gallbladder
    s += [_cyl(T.BLOOD, -40, 5, 9, 9, 60, 130)]  # portal vein
    s += [_ell(T.SPLEEN, 95, 45, 100, 32, 45, 52), _ell(T.BOWEL, 50, -35, 115, 48, 35, 38)]  # spleen, stomach
    s += [_ell(T.AIR, 50, -55, 125, 30, 12, 18)]  # gastric air
    for side in (-1, 1):
        s += [_ell(T.FAT, 65 * side, 60, 30, 38, 34, 65), _ell(T.KIDNEY, 65 * side, 60, 30, 27, 23, 55),
              _ell(T.URINE, 58 * side, 56, 30, 8, 7, 16)]
        s += [_cyl(T.MUSCLE, 45 * side, 58, 22, 20, -200, 40)]  # psoas
    s += [_cyl(T.BLOOD, -22, 30, 12, 11, -60, 250)]  # IVC
    bowel = [(-70, -40, -30), (-20, -60, 10), (30, -60, -20), (75, -30, -50), (-60, -20, -90), (10, -40, -80),
             (60, 10, 0), (-80, 20, -40), (0, -20, -40)]
    for i, (bx, by, bz) in enumerate(bowel):
        s += [_ell(T.BOWEL, bx, by, bz, 26, 22, 30)]
        if i % 3 == 0:
            s += [_ell(T.AIR, bx, by - 8, bz, 10, 8, 12)]
    # pelvis
    for side in (-1, 1):
        s += [Shape(T.BONE, (105 * side, 45, -110), (28, 62, 70), inner=0.8),  # iliac wing
              *_bone(92 * side, 0, -215, 26, 26, 26),  # femoral head
              _ell(T.BONE, 95 * side, 0, -215, 33, 33, 33, inner=0.85)]  # acetabulum rim
    s += [_ell(T.URINE, 0, -50, -200, 45, 35, 35),
          _ell(T.BOWEL, 0, 45, -195, 16, 14, 42), _cyl(T.BONE, 0, -40, 40, 8, -250, -235, inner=0.5)]
    s += _thoracolumbar_spine(-92, 55)
    # neck and head
    s += [_cyl(T.FAT, 0, 0, 62, 66, 400, 540), _cyl(T.MUSCLE, 0, 2, 54, 58, 405, 535)]
    s += _cervical_spine(55)
    s += [_cyl(T.AIR, 0, -28, 9, 8, 420, 540), _ell(T.GLAND, -18, -25, 465, 15, 10, 22),
          _ell(T.GLAND, 18, -25, 465, 15, 10, 22), _cyl(T.BLOOD, -28, -5, 4, 4, 420, 560),
          _cyl(T.BLOOD, 28, -5, 4, 4, 420, 560)]
    s += [_ell(T.MUSCLE, 0, -20, 550, 62, 80, 50), Shape(T.BONE, (0, -30, 530), (50, 62, 24), inner=0.82)]  # face, jaw
    s += [_ell(T.FAT, 0, 0, 612, 80, 100, 96), _ell(T.BONE, 0, 0, 612, 75, 95, 91),
          _ell(T.FLUID, 0, 0, 614, 68, 88, 84), _ell(T.GREY, 0, 0, 615, 65, 85, 80),
          _ell(T.WHITE, 0, 3, 620, 51, 68, 60)]
    # interhemispheric fissure: a thin sheet of CSF either side of the falx, where the medial cortices of the
    # hemispheres meet, so axial and coronal slices show the fissure line and a mid-sagittal slice (x = 0,
    # where an even slice count centres) shows the medial surface of the brain, not a plane of CSF
    # (inside the inner table of the skull: the sheet must not cut the vault and scalp on a midline slice)
    s += [_ell(T.FLUID, 0, 0, 640, 1.3, 78, 50), _ell(T.GREY, 0, 0, 640, 0.8, 78, 50)]
    s += [_ell(T.WHITE, 0, -2, 634, 9, 38, 6)]  # corpus callosum bridges the hemispheres
    s += [_ell(T.GREY, 0, 48, 566, 46, 28, 22), _ell(T.WHITE, 0, 46, 566, 22, 14, 10)]  # cerebellum
    s += [_cyl(T.GREY, 0, 18, 13, 12, 520, 600), _ell(T.FLUID, 0, 30, 585, 4, 6, 10)]  # brainstem, 4th ventricle
    s += [_ell(T.FLUID, -10, -5, 625, 6, 26, 12), _ell(T.FLUID, 10, -5, 625, 6, 26, 12)]  # ventricles
    s += [_ell(T.FLUID, 0, -2, 612, 2, 12, 8)]  # third ventricle
    s += [_ell(T.GREY, -22, 5, 610, 10, 18, 12), _ell(T.GREY, 22, 5, 610, 10, 18, 12)]  # basal ganglia
    for side in (-1, 1):
        s += [_ell(T.FAT, 32 * side, -78, 590, 17, 20, 16), _ell(T.FLUID, 32 * side, -82, 590, 12, 12, 12),
              _ell(T.AIR, 28 * side, -60, 556, 15, 18, 18)]  # orbit, globe, maxillary sinus
    return tuple(s)


@functools.cache
def arm_model() -> tuple[Shape, ...]:
    """A right arm from mid-humerus to the fingertips, long axis along +z (fingers up), wrist joint at z = 0,
    elbow joint at z = -300, palm facing -y (radius lateral at -x, ulna medial at +x).

    The left arm is the mirror image (flip x).
    """
    s: list[Shape] = [
        *_taper(T.FAT, 0, 4, [(-300.0, 40.0), (-400.0, 42.0), (-560.0, 44.0)]),  # upper arm
        *_taper(T.MUSCLE, 0, 5, [(-300.0, 33.0), (-400.0, 36.0), (-560.0, 38.0)]),
        _ell(T.FAT, 0, 3, -290, 42, 34, 50), _ell(T.MUSCLE, 0, 4, -280, 35, 27, 50),  # elbow and forearm bulk
        _cyl(T.FAT, 0, 0, 36, 26, -300, 5), _cyl(T.MUSCLE, 0, 2, 31, 21, -290, 0),
        _ell(T.FAT, 2, 0, 70, 46, 16, 75),  # palm
        # distal humerus: shaft, flared metaphysis, epicondyles, capitulum (lateral) and trochlea (medial)
        *_union(_long_bone(0, 4, 10, -560, -330), _bone(0, 4, -322, 25, 11, 14, cortex=2),
                _bone(30, 6, -324, 8, 7, 9, cortex=2), _bone(-28, 6, -324, 5, 6, 8, cortex=2),
                _bone(-14, 1, -306, 10, 10, 9, cortex=2), _bone(10, 3, -306, 12, 11, 9, cortex=2)),
        _ell(T.FAT, 0, 14, -324, 9, 4, 9),  # olecranon fossa fat pad
        *_union(_bone(10, 16, -314, 9, 8, 16, cortex=2), _bone(12, 6, -292, 11, 10, 10, cortex=2),  # ulna:
                _long_bone(14, 2, 6, -300, -10), _bone(14, 2, -8, 8, 7, 6)),  # olecranon, coronoid, shaft, head
        *_union(_bone(-15, 0, -291, 10, 10, 5, cortex=1.5), _long_bone(-15, 0, 6, -290, -268, cortex=1.5),
                _long_bone(-15, 0, 8, -270, -15), _bone(-13, 0, -12, 16, 11, 12)),  # radius: head to distal end
    ]
    carpals = [(-18, 8), (-5, 8), (8, 8), (19, 8), (-20, 24), (-7, 24), (6, 24), (18, 24)]
    for cx, cz in carpals:
        s += _bone(cx, 0, cz, 6.5, 6, 6.5, cortex=1.5)
    fingers = [(-32, 30, 62, [(68, 96), (100, 120)]),  # thumb: metacarpal then 2 phalanges
               (-17, 36, 98, [(103, 141), (145, 168), (172, 188)]),
               (-4, 36, 100, [(105, 148), (152, 178), (182, 197)]),
               (9, 36, 98, [(103, 143), (147, 172), (176, 191)]),
               (21, 36, 92, [(97, 128), (132, 150), (154, 168)])]
    for fx, m0, m1, phalanges in fingers:
        top = phalanges[-1][1] + 5
        s += [_cyl(T.FAT, fx, 0, 9, 9, m1 - 8, top)]
        s += _long_bone(fx, 0, 4.5, m0, m1, cortex=1.5)
        for p0, p1 in phalanges:
            s += _long_bone(fx, 0, 4.0, p0, p1, cortex=1.5)
    return tuple(s)


# --------------------------------------------------------------------------- regions of the body


@dataclass(frozen=True, slots=True)
class Region:
    """Where a body part lives in the model: center (mm, LPS), field of view and default coverage."""

    model: str  # "body" or "arm"
    center: tuple[float, float, float]
    fov: float  # mm across an image
    coverage: float  # mm along the long axis for projections


_REGIONS: dict[str, Region] = {
    "head": Region("body", (1.5, 0, 610), 240, 260),  # 1.5 mm off midline: sagittal slices miss the fissure
    "orbit": Region("body", (0, -40, 590), 200, 200),
    "sinus": Region("body", (0, -30, 565), 200, 200),
    "neck": Region("body", (0, 0, 470), 240, 260),
    "chest": Region("body", (0, 0, 275), 400, 430),
    "heart": Region("body", (20, -20, 220), 300, 300),
    "abdomen": Region("body", (0, 0, 60), 400, 420),
    "abdomenpelvis": Region("body", (0, 0, -40), 400, 480),
    "chestabdpelvis": Region("body", (0, 0, 80), 420, 700),
    "pelvis": Region("body", (0, 0, -170), 400, 420),
    "lspine": Region("body", (0, 40, -30), 300, 350),
    "tspine": Region("body", (0, 40, 250), 300, 400),
    "cspine": Region("body", (0, 20, 480), 240, 260),
    "hip": Region("body", (-95, 0, -215), 260, 300),
    "femur": Region("body", (-95, 0, -420), 260, 480),
    # knee: 17 mm medial of the leg axis, so the mid-sagittal slice cuts the medial condyle and meniscus
    "knee": Region("body", (-78, 10, -660), 170, 260),
    "leg": Region("body", (-95, 10, -840), 200, 430),
    "ankle": Region("body", (-95, -10, -1000), 200, 220),
    "foot": Region("foot", (0, 32, 50), 150, 270),
    "wholebody": Region("body", (0, 0, -150), 600, 1750),
    "shoulder": Region("shoulder", (-150, 20, 385), 220, 250),
    "wrist": Region("arm", (0, 0, 20), 160, 200),
    "hand": Region("arm", (0, 0, 90), 180, 240),
    "forearm": Region("arm", (0, 0, -120), 160, 330),
    "elbow": Region("arm", (0, 0, -305), 160, 220),
    # the arm model starts at mid-humerus: the humeral shaft down to the elbow joint
    "humerus": Region("arm", (0, 0, -425), 160, 270),
    "breast": Region("breast", (0, -80, 250), 340, 200),
    "uterus": Region("female", (0, 0, -180), 260, 300),
    "prostate": Region("male", (0, -10, -245), 200, 240),
}

_BODY_PART_REGION: dict[str, str] = {
    "HEAD": "head", "BRAIN": "head", "SKULL": "head", "ORBIT": "orbit", "SINUS": "sinus",
    "NECK": "neck", "THYROID": "neck", "CAROTID": "neck", "CSPINE": "cspine",
    "CHEST": "chest", "HEART": "heart", "TSPINE": "tspine", "CLAVICLE": "chest", "SHOULDER": "shoulder",
    "ABDOMEN": "abdomen", "LIVER": "abdomen", "KIDNEY": "abdomen", "GALLBLADDER": "abdomen", "AORTA": "abdomen",
    "ABDOMENPELVIS": "abdomenpelvis", "CHESTABDPELVIS": "chestabdpelvis", "LSPINE": "lspine", "SPINE": "lspine",
    "PELVIS": "pelvis", "PROSTATE": "prostate", "UTERUS": "uterus", "PELVISFEMALE": "uterus", "SCROTUM": "pelvis",
    "HIP": "hip", "FEMUR": "femur", "KNEE": "knee", "LEG": "leg", "ANKLE": "ankle", "FOOT": "foot",
    "EXTREMITY": "knee", "WHOLEBODY": "wholebody", "BONE": "wholebody",
    "WRIST": "wrist", "HAND": "hand", "FOREARM": "forearm", "ELBOW": "elbow", "HUMERUS": "humerus",
    "BREAST": "breast",
}


def region_for(body_part: str, laterality: Laterality = Laterality.NONE) -> Region:
    """The model region imaged for a DICOM Body Part Examined term, mirrored for a left-sided exam."""
    region = _REGIONS[_BODY_PART_REGION.get(body_part.upper(), "abdomen")]
    x, y, z = region.center
    if region.model not in ("arm", "foot") and laterality == Laterality.LEFT:
        x = -x  # the model's paired parts sit at -x (patient right): mirror to the left
    return Region(region.model, (x, y, z), region.fov, region.coverage)


@functools.cache
def shoulder_model() -> tuple[Shape, ...]:
    """The body with both arms hanging at the sides: humeral heads in the glenoids under the acromions."""
    s = list(body_model())
    for side in (-1, 1):
        x = 178.0 * side
        s += [_ell(T.FAT, x - 4 * side, 10, 380, 46, 48, 62), _cyl(T.FAT, x, 10, 42, 40, 150, 380),
              _ell(T.MUSCLE, x - 4 * side, 10, 382, 40, 42, 55), _cyl(T.MUSCLE, x, 10, 35, 33, 150, 372)]  # deltoid
        hx = x + 3 * side  # humeral head centre
        # supraspinatus: the muscle belly in the supraspinous fossa runs laterally under the acromion and
        # its (dark) tendon caps the head to insert on the greater tuberosity
        s += [_ell(T.MUSCLE, 128 * side, 24, 418, 48, 16, 11),
              Shape(T.LIGAMENT, (hx + 3 * side, 14, 391), (31, 29, 30.5), clip=(405, 430), inner=0.84),
              Shape(T.FAT, (hx + 3 * side, 14, 391), (35, 32, 35), clip=(420, 430), inner=0.9)]  # bursal fat
        s += [_ell(T.CARTILAGE, hx, 12, 390, 26.5, 26.5, 26.5)]  # articular cartilage of the head
        s += _union(_bone(hx, 12, 390, 25, 25, 25, cortex=2),  # humeral head, greater tuberosity,
                    _bone(x + 19 * side, 11, 398, 10, 14, 13, cortex=2),  # a neck flaring into the shaft
                    [Shape(T.BONE, (x + 4 * side, 12, 340), (22, 22, 1e6), clip=(310, 372), taper=(0.56, 1.0)),
                     Shape(T.MARROW, (x + 4 * side, 12, 340), (19, 19, 1e6), clip=(310, 370), taper=(0.5, 1.0))],
                    _long_bone(x + 4 * side, 12, 12.5, 150, 330, cortex=3))
        s += [_ell(T.FLUID, 156 * side, 16, 390, 4.5, 15, 21)]  # glenohumeral joint space
        s += [_ell(T.LIGAMENT, 153 * side, 18, 390 + dz, 6, 10, 6) for dz in (-19.0, 19.0)]  # superior/inferior labrum
        s += _union([Shape(T.BONE, (141 * side, 18, 390), (10, 16, 21), power=3.0),  # glenoid: a flat-faced pear
                     Shape(T.MARROW, (141 * side, 18, 390), (8, 14, 19), power=3.0)],
                    _bone(128 * side, 40, 386, 12, 28, 13, cortex=2),  # scapular neck toward the blade
                    _bone(160 * side, 26, 431, 34, 18, 6.5, cortex=1.5),  # acromion over the head
                    _bone(148 * side, -22, 402, 6, 18, 6, cortex=1.5))  # coracoid
        s += [_ell(T.CARTILAGE, 149 * side, 17, 390, 2.5, 14, 18)]  # glenoid cartilage facing the head
    return tuple(s)


@functools.cache
def foot_model() -> tuple[Shape, ...]:
    """A right foot standing on its toes for a dorsoplantar radiograph: toes along +z, sole toward +y,
    lateral side at -x (the left foot is the mirror image)."""
    return tuple(_foot_shapes(lambda c, r: ((-c[0], -c[2], c[1]), (r[0], r[2], r[1]))))


@functools.cache
def female_model() -> tuple[Shape, ...]:
    """The body with breasts and a uterus (for breast and female pelvis regions; the base body is sexless)."""
    s = list(body_model())
    for side in (-1, 1):
        s += [_ell(T.FAT, 78 * side, -128, 250, 68, 62, 62),  # breast: fat with a fibroglandular cone
              _ell(T.GLAND, 78 * side, -150, 252, 38, 32, 34), _ell(T.FAT, 78 * side, -160, 240, 12, 10, 10),
              _ell(T.MUSCLE, 78 * side, -116, 250, 60, 8, 55)]  # pectoralis
        s += [_ell(T.GLAND, 60 * side, 10, -175, 13, 9, 17), _ell(T.FLUID, 58 * side, 10, -175, 3, 3, 3)]  # ovaries
    # anteverted uterus behind the bladder dome: myometrium, dark junctional zone, bright endometrium
    s += [_ell(T.GLAND, 0, 5, -175, 30, 22, 42), _ell(T.MUSCLE, 0, 5, -175, 14, 9, 33),
          _ell(T.FLUID, 0, 5, -175, 7, 3.5, 27), _ell(T.MUSCLE, 0, 12, -222, 16, 14, 12)]  # cervix
    return tuple(s)


@functools.cache
def male_model() -> tuple[Shape, ...]:
    """The body with a prostate under the bladder: bright peripheral zone behind a darker transition zone."""
    s = list(body_model())
    s += [_ell(T.GLAND, 0, -8, -252, 23, 18, 19), _ell(T.MUSCLE, 0, -14, -250, 14, 10, 14),
          _ell(T.FLUID, 0, -2, -250, 2, 2, 12)]  # prostate zones and urethra
    s += [_ell(T.GLAND, 22 * side, 25, -228, 14, 6, 8) for side in (-1, 1)]  # seminal vesicles
    return tuple(s)


@functools.cache
def _model(name: str, laterality: Laterality) -> Body:
    """The shapes of a region's model, ready to rasterise (the arm and foot mirrored for the left side)."""
    body = Body({"arm": arm_model, "foot": foot_model, "shoulder": shoulder_model, "breast": female_model,
                 "female": female_model, "male": male_model}.get(name, body_model)())
    return body.mirrored() if name in ("arm", "foot") and laterality == Laterality.LEFT else body


# --------------------------------------------------------------------------- plane evaluation

# Image axes per plane: (axis along columns, sign, axis along rows, sign, normal axis).
# AX: columns +x, rows +y; COR: columns +x, rows -z; SAG: columns +y, rows -z (PS3.3 C.7.6.2.1.1).
PLANE_AXES: dict[Plane, tuple[int, int, int, int, int]] = {
    Plane.AXIAL: (0, 1, 1, 1, 2),
    Plane.NONE: (0, 1, 1, 1, 2),
    Plane.CORONAL: (0, 1, 2, -1, 1),
    Plane.SAGITTAL: (1, 1, 2, -1, 0),
}


def plane_coords(region: Region, plane: Plane, rows: int, cols: int, fov_u: float | None = None,
                 fov_v: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Coordinates (mm) of pixel centers along columns (u) and rows (v) of a plane through the region center."""
    ua, us, va, vs, _ = PLANE_AXES[plane]
    fu = fov_u or region.fov
    fv = fov_v or region.fov * rows / cols
    du, dv = fu / cols, fv / rows
    u = region.center[ua] + us * (np.arange(cols) - (cols - 1) / 2) * du
    v = region.center[va] + vs * (np.arange(rows) - (rows - 1) / 2) * dv
    return u, v, du


@functools.lru_cache(maxsize=6)
@anatomy_cache.disk_cached
def label_levels(body_part: str, laterality: Laterality, plane: Plane, rows: int, cols: int,
                 positions: tuple[float, ...]) -> np.ndarray:
    """Label maps (uint8, levels × rows × cols) of the region's plane at ``positions`` (mm along the normal axis).

    Cached (bounded LRU): a whole exam re-uses it for series of the same geometry; and on disk
    (:mod:`generators.dicom.anatomy_cache`), shared by the pool's processes and later runs.
    """
    region = region_for(body_part, laterality)
    axes = PLANE_AXES[plane]
    shapes = _model(region.model, laterality)
    u, v, _ = plane_coords(region, plane, rows, cols)
    out = np.zeros((len(positions), rows, cols), np.uint8)
    grid = Grid(shapes, axes, u, v)
    for i, w in enumerate(positions):
        grid.paint(out[i], w)
    out.flags.writeable = False
    return out


# --------------------------------------------------------------------------- intensities

# CT attenuation (HU) per tissue, without contrast.
_HU = np.array([-1000, -100, 45, 5, 1200, 260, -850, 60, 50, 35, 40, 40, 28, 100, 90, 80, 25, 90, 5, -85],
               np.float32)
_HU_ENHANCED: dict[ContrastPhase, dict[Tissue, float]] = {
    ContrastPhase.ARTERIAL: {T.BLOOD: 320, T.KIDNEY: 180, T.SPLEEN: 120, T.LIVER: 75},
    ContrastPhase.PORTAL_VENOUS: {T.BLOOD: 170, T.KIDNEY: 160, T.SPLEEN: 120, T.LIVER: 115},
    ContrastPhase.DELAYED: {T.BLOOD: 90, T.KIDNEY: 120, T.LIVER: 80, T.URINE: 400},
    ContrastPhase.POST: {T.BLOOD: 160, T.KIDNEY: 150, T.SPLEEN: 110, T.LIVER: 110},
}

# MR signal (arbitrary units, 0-1000) per tissue and weighting; order = Tissue.
_MR: dict[str, list[float]] = {
    #       AIR FAT  MUS FLU BONE MARR LUNG LIV SPL KID BLOOD GREY WHITE CART LIG DISC BOWEL GLAND URINE MES
    "T1":  [0, 900, 330, 110, 20, 780, 25, 480, 380, 400, 90, 430, 600, 380, 25, 330, 280, 480, 100, 480],
    "T2":  [0, 620, 230, 1000, 20, 480, 20, 250, 560, 620, 60, 620, 420, 420, 25, 800, 450, 500, 1000, 330],
    "PD":  [0, 820, 420, 760, 25, 700, 30, 480, 560, 560, 80, 680, 580, 620, 30, 650, 450, 560, 760, 520],
    "FLAIR": [0, 600, 300, 50, 20, 480, 20, 300, 400, 400, 60, 650, 450, 400, 25, 500, 380, 450, 50, 330],
    "STIR": [0, 40, 220, 1000, 15, 60, 20, 260, 520, 600, 60, 600, 420, 420, 25, 780, 430, 480, 1000, 110],
    "DWI": [0, 60, 180, 150, 10, 80, 10, 280, 460, 360, 40, 420, 380, 200, 20, 250, 250, 300, 150, 140],
    "ADC": [0, 80, 350, 1000, 10, 120, 10, 380, 280, 600, 900, 300, 270, 450, 60, 500, 500, 500, 1000, 300],
    "T2STAR": [0, 550, 200, 800, 10, 300, 5, 180, 400, 450, 200, 520, 400, 350, 15, 600, 350, 400, 800, 300],
    "TOF": [0, 300, 120, 60, 10, 280, 10, 150, 150, 150, 1000, 180, 200, 120, 10, 120, 120, 150, 60, 140],
}


def ct_lut(phase: ContrastPhase) -> np.ndarray:
    """HU per tissue for a contrast phase (PS3.3 C.8.2.1 Rescale: stored = HU + 1024)."""
    hu = _HU.copy()
    for tissue, value in _HU_ENHANCED.get(phase, {}).items():
        hu[tissue] = value
    return hu


# Balanced SSFP (cine): contrast follows T2/T1, so blood and fluid are bright, myocardium dark.
_SSFP = [0, 700, 180, 850, 20, 500, 15, 260, 380, 400, 900, 450, 380, 300, 20, 500, 300, 400, 850, 350]


def mr_lut(weighting: Weighting | None, fat_sat: bool, contrast: bool, bright_blood: bool = False) -> np.ndarray:
    """MR signal per tissue for a weighting; fat saturation suppresses fat and fatty marrow;
    ``bright_blood`` gives the balanced-SSFP contrast of cine imaging."""
    key = (weighting or Weighting.T1).value
    if key == "LOCALIZER":
        key = "T1"
    lut = np.array(_SSFP if bright_blood else _MR.get(key, _MR["T1"]), np.float32)
    if fat_sat:
        lut[T.FAT] *= 0.12
        lut[T.MARROW] *= 0.3  # red-marrow islands and water keep some signal
        lut[T.MESENTERY] *= 0.4  # only its fat part is suppressed
    if contrast and key == "T1":
        for t, gain in ((T.BLOOD, 8.0), (T.KIDNEY, 1.8), (T.LIVER, 1.4), (T.SPLEEN, 1.6), (T.BOWEL, 1.3)):
            lut[t] = min(lut[t] * gain, 950.0)
    return lut


def mu_lut(bone_gain: float = 1.0) -> np.ndarray:
    """Linear attenuation per tissue (1/mm) at a diagnostic beam: water 0.02/mm scaled by HU.

    ``bone_gain`` > 1 models a low-kVp extremity technique, where calcium's photoelectric absorption
    makes bone stand out more from soft tissue than CT numbers (measured at 120 kVp) suggest.
    """
    mu = np.maximum(0.02 * (1.0 + _HU / 1000.0), 0.0).astype(np.float32)
    for t in (T.BONE, T.MARROW):
        mu[t] = 0.02 + (mu[t] - 0.02) * bone_gain
    return mu


@functools.lru_cache(maxsize=4)
def bias_field(rows: int, cols: int) -> np.ndarray:
    """Smooth receive-coil shading for MR (brighter toward the near coil side), float32 rows × cols."""
    yy = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    return (1.05 - 0.18 * (xx * xx + 0.6 * (yy - 0.3) ** 2)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def mr_texture(rows: int, cols: int) -> np.ndarray:
    """Coil shading × a fixed, smooth ±5 % tissue inhomogeneity (float32 rows × cols): MR is never flat."""
    rng = np.random.default_rng(20261125)
    coarse = rng.standard_normal((rows // 16 + 2, cols // 16 + 2)).astype(np.float32)
    field = 1.0 + 0.05 * _resize(coarse, rows, cols)
    out = (bias_field(rows, cols) * field).astype(np.float32)
    out.flags.writeable = False
    return out


def _smooth(values: np.ndarray) -> np.ndarray:
    """A [1 2 1]/4 blur along both axes in place: the partial-volume softening of a reconstructed MR image."""
    values[1:-1, :] = 0.25 * values[:-2, :] + 0.5 * values[1:-1, :] + 0.25 * values[2:, :]
    values[:, 1:-1] = 0.25 * values[:, :-2] + 0.5 * values[:, 1:-1] + 0.25 * values[:, 2:]
    return values


def intensity_levels(labels_key: tuple, lut_bytes: bytes, lo: int, hi: int, shade: bool) -> tuple[np.ndarray, ...]:
    """Stored-value levels (int16) = LUT[labels], optionally shaded, clipped to [lo, hi].

    Cached (bounded LRU) on the label key and the lookup table's bytes: series of one weighting and
    geometry share it. ``shade`` (MR) applies coil shading, tissue texture and a slight blur; CT stays
    a plain lookup (its hot path). The caches are separate: an MR exam's dozen small stacks (a few MB
    each) stay cached for its repeats without letting CT's 33 MB stacks pile up.

    A stack is a tuple of read-only 2-D levels, not one 3-D array: each level lies below glibc's mmap
    threshold (raised to its 32 MiB maximum in the pixel processes, :mod:`simulations.pool`), so a new
    stack takes the heap memory an evicted one freed. One 33 MB CT array was ``mmap``-ed afresh every
    time and its pages faulted in and zeroed by the kernel: ``perf`` during ``bench/simulate.py`` put
    2.2 % of the run's CPU time in that zeroing, under ``np.take``.
    """
    return (_shaded_levels if shade else _plain_levels)(labels_key, lut_bytes, lo, hi)


@functools.lru_cache(maxsize=6)
def _plain_levels(labels_key: tuple, lut_bytes: bytes, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """LUT[labels] through an int16 table clipped once (the same values as clipping every pixel)."""
    lut = np.clip(np.frombuffer(lut_bytes, np.float32), lo, hi).astype(np.int16)
    labels = label_levels(*labels_key)
    # level by level, unchecked (labels < N_TISSUES): 2.5x faster than lut[labels]
    return tuple(_read_only(np.take(lut, level, mode="clip")) for level in labels)


@functools.lru_cache(maxsize=16)
def _shaded_levels(labels_key: tuple, lut_bytes: bytes, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    labels = label_levels(*labels_key)
    lut = np.frombuffer(lut_bytes, np.float32)
    shading = mr_texture(labels.shape[1], labels.shape[2])
    levels = []
    for level in labels:  # level by level: no float temporary the size of the stack
        values = np.take(lut, level, mode="clip")
        values *= shading
        _smooth(values)
        np.clip(values, lo, hi, out=values)
        levels.append(_read_only(values.astype(np.int16)))
    return tuple(levels)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _gaussian_bank(seed: int, size: int, sigma: float, clip: float) -> np.ndarray:
    """``size`` + 65,536 Gaussian int16 samples (σ ``sigma``) clipped to ±``clip``: slices and images take
    seeded offset windows of it (see :data:`noise_bank`)."""
    rng = np.random.default_rng(seed)
    bank = rng.standard_normal(size + 65536, dtype=np.float32) * np.float32(sigma)
    np.clip(bank, -clip, clip, out=bank)
    out = np.rint(bank).astype(np.int16)
    out.flags.writeable = False
    return out


# One bank per size and noise level (a fixed seed) serves every CT/MR slice and projection image: each reads a
# window at its own seeded offset, so no series or image draws millions of Gaussian samples of its own.
_NOISE_SEED = 20261202
noise_bank = functools.lru_cache(maxsize=8)(functools.partial(_gaussian_bank, _NOISE_SEED))


def projection_noise(shape: tuple[int, int], sigma: float, seed: int) -> np.ndarray:
    """Seeded int16 noise (σ ``sigma``, clipped to ±3σ) of ``shape``: a window of the shared projection bank."""
    n = shape[0] * shape[1]
    bank = noise_bank(n, sigma, 3.0 * sigma)
    offset = int(np.random.default_rng(seed).integers(0, bank.size - n))
    return bank[offset:offset + n].reshape(shape)


# --------------------------------------------------------------------------- projections


def _resize(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return np.array(Image.fromarray(img.astype(np.float32), mode="F").resize((cols, rows), Image.BICUBIC))


def _detector(coarse: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A coarse-grid projection image resampled to the rows × cols detector."""
    return coarse if coarse.shape == (rows, cols) else _resize(coarse, rows, cols)


# Beam rotation about the limb's long axis for oblique radiographic views (0 = straight AP/PA).
_OBLIQUE_DEGREES = {"OBLIQUE": 40.0, "OBL": 40.0, "MORTISE": 15.0}


@functools.lru_cache(maxsize=6)
def projection(body_part: str, laterality: Laterality, view: str, rows: int, cols: int) -> np.ndarray:
    """Line integral of attenuation through the region for a radiographic view of a rows × cols detector.

    PA/AP project along y (image columns = patient x, mirrored so the patient's right is on the viewer's
    left), lateral views (LL/RL/LAT) along x. Evaluated on a coarse grid (float32, rows // scale × cols //
    scale, scale = max(1, max(rows, cols) // 400)) that the caller resamples to the detector, after the
    processing that is as well done on it.
    """
    region = region_for(body_part, laterality)
    shapes = _model(region.model, laterality)
    lateral = view.upper() in {"LL", "RL", "LAT", "LATERAL", "ML", "LM", "XTABLE"}
    scale = max(1, max(rows, cols) // 400)
    r_lo, c_lo = rows // scale, cols // scale
    cov = region.coverage
    fov_u = cov * cols / rows
    cx, cy, cz = region.center
    # Beam path: an extremity's lateral view must not cross the other limb.
    reach = min(220.0, 0.6 * region.fov)
    if view.upper() == "AXIAL_PATELLOFEMORAL":
        return _axial_patellofemoral(region, shapes, rows, cols, scale)
    if lateral:
        axes = PLANE_AXES[Plane.SAGITTAL]
        u = cy + (np.arange(c_lo) - (c_lo - 1) / 2) * fov_u / c_lo
        depth = np.arange(cx - reach, cx + reach, 3.0)
    else:
        axes = PLANE_AXES[Plane.CORONAL]
        u = cx + (np.arange(c_lo) - (c_lo - 1) / 2) * fov_u / c_lo
        depth = np.arange(cy - min(160.0, reach), cy + min(160.0, reach), 3.0)
    v = cz - (np.arange(r_lo) - (r_lo - 1) / 2) * cov / r_lo
    mu = mu_lut(1.0 if region.fov >= 300 else 1.8)
    total = np.zeros((r_lo, c_lo), np.float32)
    labels = np.zeros((r_lo, c_lo), np.uint8)
    # Oblique views turn the beam about the long axis: parallel rays that drift across u with depth.
    tilt = math.tan(math.radians(_OBLIQUE_DEGREES.get(view.upper(), 0.0)))
    if laterality == Laterality.LEFT:
        tilt = -tilt
    centre = float(depth.mean())
    grid = Grid(shapes, axes, u, v)
    step = np.empty_like(total)
    for w in depth:
        labels.fill(0)
        if tilt:  # the rays drift across u with depth: a sampling of its own per step
            grid = Grid(shapes, axes, u + (w - centre) * tilt, v)
        grid.paint(labels, float(w))
        total += np.take(mu, labels, out=step, mode="clip")
    total *= 3.0 * math.sqrt(1.0 + tilt * tilt)  # the slanted path is longer per depth step
    if body_part.upper() in {"ELBOW", "HUMERUS"}:
        total = np.ascontiguousarray(total[::-1])  # hung as read: humerus at the top, forearm below
    return total


@functools.lru_cache(maxsize=6)
@anatomy_cache.disk_cached
def ct_scout(body_part: str, laterality: Laterality, rows: int, cols: int) -> np.ndarray:
    """A CT scout's noise-free stored values (int16, HU + 1024): the AP projection shown HU-like. Cached: every
    CT exam of a body part starts with the same scout."""
    path = _detector(projection(body_part, laterality, "AP", rows, cols), rows, cols)
    peak = float(np.percentile(path, 99.5)) or 1.0
    out = np.clip(1024 - 1000 + 2600 * (1 - np.exp(-1.5 * path / peak)), 0, 4000).astype(np.int16)
    out.flags.writeable = False
    return out


# The patellofemoral joint of the model knee (z, mm): from the tibial tuberosity level to above the patella.
_PATELLOFEMORAL_Z = (-662.0, -598.0)


def _axial_patellofemoral(region: Region, shapes: Body, rows: int, cols: int, scale: int
                          ) -> np.ndarray:
    """The axial ("sunrise", "skyline") view of the knee: the beam runs along the femur, tangential to the
    patellofemoral joint, so the image is a transverse projection with the patella on top (anterior up)
    riding in the trochlear groove between the femoral condyles (patient's right on the viewer's left).
    Only the joint's slab is crossed: the flexed knee puts the rest of the limb out of the beam."""
    r_lo, c_lo = rows // scale, cols // scale
    span = region.fov  # a tight field around the joint, the same mm per pixel across and down
    cx, cy, _ = region.center
    u = cx + (np.arange(c_lo) - (c_lo - 1) / 2) * span / c_lo
    v = cy - 10.0 + (np.arange(r_lo) - (r_lo - 1) / 2) * span * rows / cols / r_lo
    mu = mu_lut(1.8)
    total = np.zeros((r_lo, c_lo), np.float32)
    labels = np.zeros((r_lo, c_lo), np.uint8)
    step = 2.0
    grid = Grid(shapes, PLANE_AXES[Plane.AXIAL], u, v)
    for w in np.arange(_PATELLOFEMORAL_Z[0], _PATELLOFEMORAL_Z[1], step):
        labels.fill(0)
        grid.paint(labels, float(w))
        total += mu[labels]
    total *= step
    return total


@functools.lru_cache(maxsize=6)
@anatomy_cache.disk_cached
def _processed(body_part: str, laterality: Laterality, view: str, rows: int, cols: int, bits: int) -> np.ndarray:
    """The noise-free processed radiograph (int16 stored values): deterministic per body part, side, view and size.

    Image processing as a DR console does it: subtract a heavily blurred copy (equalisation) so bone
    detail stands out of thick soft tissue, then a film-like curve.
    """
    path = projection(body_part, laterality, view, rows, cols)
    k = 24
    low = _resize(_resize(path, max(rows // k, 2), max(cols // k, 2)), *path.shape)
    proc = _detector(path - np.float32(0.6) * low, rows, cols)  # resampling is linear: once, after the subtraction
    lo_p, hi_p = np.percentile(proc, (1.0, 99.7))
    proc -= np.float32(lo_p)
    proc *= np.float32(-4.0 / max(float(hi_p - lo_p), 1e-6))
    proc += np.float32(4.0 * 0.45)
    np.exp(proc, out=proc)
    proc += np.float32(1.0)
    top = (1 << bits) - 1
    img = np.float32(top * 0.95) / proc + np.float32(0.03 * top)  # the sigmoid, scaled to the stored range
    out = img.astype(np.int16)
    out.flags.writeable = False
    return out


def radiograph(body_part: str, laterality: Laterality, view: str, rows: int, cols: int, *,
               seed: int, bits: int = 12) -> np.ndarray:
    """A For-Presentation radiograph (uint16, 0 … 2**bits-1): bone and soft tissue bright, air dark.

    The processed image is cached; each exposure adds its own seeded quantum noise (σ 0.8 % of the range).
    """
    base = _processed(body_part, laterality, view, rows, cols, bits)
    top = (1 << bits) - 1
    img = base + projection_noise(base.shape, 0.008 * 0.95 * top, seed)
    np.clip(img, 0, top, out=img)
    return img.astype(np.uint16)


def nm_bone_scan(rows: int, cols: int, *, posterior: bool, seed: int) -> np.ndarray:
    """Whole-body Tc-99m MDP bone scan (uint16 counts): skeleton uptake, kidneys/bladder, Poisson noise."""
    region = region_for("WHOLEBODY")
    shapes = _model("body", Laterality.NONE)
    axes = PLANE_AXES[Plane.CORONAL]
    scale = 2
    r_lo, c_lo = rows // scale, cols // scale
    fov_u = region.coverage * cols / rows
    u = region.center[0] + (np.arange(c_lo) - (c_lo - 1) / 2) * fov_u / c_lo
    v = region.center[2] - (np.arange(r_lo) - (r_lo - 1) / 2) * region.coverage / r_lo
    uptake = np.zeros(N_TISSUES, np.float32)
    uptake[[T.BONE, T.MARROW]] = (1.0, 0.35)
    uptake[[T.KIDNEY, T.URINE]] = (0.4, 0.9)
    uptake[[T.MUSCLE, T.FAT, T.LIVER, T.SPLEEN, T.BLOOD, T.BOWEL]] = 0.03
    depths = np.arange(-170, 170, 6.0)
    # Activity near the camera face counts more (attenuation): anterior camera sees y < 0 best.
    weights = np.exp((depths if posterior else -depths) / 140.0).astype(np.float32)
    total = np.zeros((r_lo, c_lo), np.float32)
    labels = np.zeros((r_lo, c_lo), np.uint8)
    grid = Grid(shapes, axes, u, v)
    for w, k in zip(depths, weights, strict=True):
        labels.fill(0)
        grid.paint(labels, float(w))
        total += uptake[labels] * k
    img = _resize(total, rows, cols)
    if posterior:
        img = img[:, ::-1]  # posterior view: the patient's left is on the viewer's left
    img *= 70.0 / max(float(np.percentile(img, 99.5)), 1e-6)
    rng = np.random.default_rng(seed)
    return rng.poisson(np.clip(img, 0, None) + 0.2).astype(np.uint16)


def _double(x: np.ndarray) -> np.ndarray:
    """``x`` (float32) enlarged 2× by linear interpolation: a smooth field's enlargement at a quarter of the cost
    of Pillow's float resize."""
    out = np.empty((x.shape[0] * 2, x.shape[1] * 2), np.float32)
    out[0::2, 0::2] = x
    np.add(x[:, :-1], x[:, 1:], out=out[0::2, 1:-1:2])
    out[0::2, 1:-1:2] *= np.float32(0.5)
    out[0::2, -1] = x[:, -1]
    np.add(out[0:-2:2], out[2::2], out=out[1:-1:2])
    out[1:-1:2] *= np.float32(0.5)
    out[-1] = out[-2]
    return out


@dataclass(frozen=True, slots=True)
class _Breast:
    """The deterministic parts of a mammogram of one view and size (float32 rows × cols, chest wall on the right)."""

    tissue: np.ndarray  # 4000 × (skin-line falloff of the compressed thickness) inside the breast, 0 outside
    gland: np.ndarray  # 4000 × the fibroglandular zone weighting behind the nipple
    inside: np.ndarray  # the breast outline (bool)
    pectoral: np.ndarray | None  # MLO: where the pectoral muscle triangle is (bool)


@functools.lru_cache(maxsize=4)
def _breast(rows: int, cols: int, mlo: bool) -> _Breast:
    yy = (np.arange(rows, dtype=np.float32)[:, None] - rows * 0.5) / (rows * 0.5)
    dist = (cols - 1 - np.arange(cols, dtype=np.float32))[None, :] / cols  # distance from chest wall (right edge)
    reach = 0.78 if not mlo else 0.85
    # breast outline: a half ellipse from the chest wall, flattened by compression
    shape = (dist / reach) ** 2 + (yy / (0.92 if mlo else 0.82)) ** 2
    inside = shape < 1.0
    thickness = np.sqrt(np.clip(1.0 - shape, 0, 1))  # thinner toward the skin line
    tissue = np.where(inside, 4000 * (0.25 + 0.35 * thickness), 0).astype(np.float32)
    gland = (4000 * np.exp(-((dist - 0.3) / 0.22) ** 2 - (yy / 0.55) ** 2)).astype(np.float32)
    pectoral = ((dist + (yy + 1.0) * 0.22) < 0.28) & (yy < 0.3) if mlo else None
    return _Breast(tissue, gland, inside, pectoral)


def mammogram(rows: int, cols: int, *, laterality: Laterality, view: str, seed: int) -> np.ndarray:
    """A processed mammogram (uint16, 12-bit) with the chest wall at the column edge for the side.

    Right breast: chest wall on the right edge (PatientOrientation P\\L / P\\F); left breast on the left
    (A\\R / A\\F), the back-to-back hanging convention. Fibroglandular tissue is smoothed noise (seeded per
    image) weighted toward the retro-areolar region; MLO adds the pectoral muscle triangle in the upper
    chest-wall corner. The outline, thickness and gland zone are cached per view and size.
    """
    breast = _breast(rows, cols, view.upper() in {"MLO", "ML", "LM"})
    rng = np.random.default_rng(seed)
    # density = clip(0.55 gland + 0.35 texture × gland + 0.08 fine, 0, 1) in stored units (× 4000): smooth, so
    # it is made at half size and enlarged once
    half_r, half_c = (rows + 1) // 2, (cols + 1) // 2
    texture = _resize(rng.standard_normal((rows // 16 + 1, cols // 16 + 1)).astype(np.float32), half_r, half_c)
    fine = _resize(rng.standard_normal((rows // 4 + 1, cols // 4 + 1)).astype(np.float32), half_r, half_c)
    texture *= np.float32(0.35)
    texture += np.float32(0.55)
    texture *= breast.gland[::2, ::2]
    fine *= np.float32(0.08 * 4000)
    texture += fine
    np.clip(texture, 0, 4000, out=texture)
    img = _double(texture)[:rows, :cols]
    img *= np.float32(0.55)
    img += breast.tissue
    img[~breast.inside] = 0
    if breast.pectoral is not None:
        np.maximum(img, np.float32(0.85 * 4000), out=img, where=breast.pectoral)
    noise = projection_noise((rows, cols), 0.01 * 4000, rng.integers(1 << 62))
    np.add(img, noise, out=img, where=breast.inside)
    np.clip(img, 0, 4000, out=img)
    out = img.astype(np.uint16)
    if laterality == Laterality.LEFT:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
