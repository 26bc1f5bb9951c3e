"""Rasterising the body model's shapes onto image planes: the hot path of CT/MR levels and projections.

A plane cuts a few dozen of a model's ~1,000 shapes. A :class:`Grid` is one sampling of a plane (``u`` along
the columns × ``v`` down the rows, evenly spaced pixel centres) of a :class:`Body`; it paints the plane at any
position ``w`` along the normal. The shapes a plane cuts are found with one vectorised bounds test, and their
cross-sections' extents and pixel index ranges are computed for all of them at once; each shape's normalised
coordinates along ``u`` and ``v`` (and its z clip / period mask) are computed once per grid and reused by every
level or depth step painted on it. What is left per shape is the mask of its bounding box, or for an elliptic
cylinder cut along its axis (the trunk, limbs and canal segments on coronal and sagittal planes) a row × column
fill. The painter's order is kept: later shapes overwrite earlier ones.

The axes are those of :data:`generators.dicom.phantoms.PLANE_AXES`: z is either the plane's normal (axial) or
runs down its rows (coronal, sagittal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

# A radius at least this long is an elliptic cylinder's axis (see phantoms._cyl): its cross-section along the
# axis is a band, not an ellipse.
CYLINDER = 1e5


class ShapeLike(Protocol):
    """What the rasteriser reads of a :class:`generators.dicom.phantoms.Shape`."""

    tissue: int
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    clip: tuple[float, float]
    inner: float
    period: tuple[float, float] | None
    taper: tuple[float, float] | None
    power: float


class Body:
    """A model's shapes in paint order and, column-wise, the numbers the rasteriser needs of them."""

    def __init__(self, shapes: Sequence[ShapeLike]) -> None:
        self.shapes = tuple(shapes)
        self.tissue = np.array([s.tissue for s in shapes], np.uint8)
        self.center = np.array([s.center for s in shapes], np.float64)
        self.radii = np.array([s.radii for s in shapes], np.float64)
        self.clip = np.array([s.clip for s in shapes], np.float64)
        self.power = np.array([s.power for s in shapes], np.float64)
        self.cone = np.array([s.taper is not None for s in shapes])
        self.pitch = np.array([s.period[0] if s.period else 0.0 for s in shapes])
        self.duty = np.array([s.period[1] if s.period else 0.0 for s in shapes])
        grow = np.array([max(s.taper) if s.taper else 1.0 for s in shapes])[:, None]
        self.lo = self.center - self.radii * np.hstack([grow, grow, np.ones_like(grow)])
        self.hi = self.center + self.radii * np.hstack([grow, grow, np.ones_like(grow)])
        self.lo[:, 2] = np.maximum(self.lo[:, 2], self.clip[:, 0])
        self.hi[:, 2] = np.minimum(self.hi[:, 2], self.clip[:, 1])

    def mirrored(self) -> Body:
        """The body flipped left-right (x → -x)."""
        return Body([type(s)(s.tissue, (-s.center[0], s.center[1], s.center[2]), s.radii, s.clip,  # type: ignore
                             s.inner, s.period, s.taper, s.power) for s in self.shapes])


def _norm(coord: np.ndarray, centre: float, radius: float, power: float) -> np.ndarray:
    """|(coord - centre) / radius| ** power in float32 (squared for an ellipsoid)."""
    t = ((coord - centre) / radius).astype(np.float32)
    return t * t if power == 2.0 else np.abs(t) ** np.float32(power)


def _index_ranges(start: float, step: float, size: int, lo: np.ndarray, hi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per shape, the slice of an evenly spaced axis covering [lo, hi], one sample wider each side (the exact
    test trims it): rounding never loses a pixel."""
    a, b = (lo - start) / step, (hi - start) / step
    a, b = np.minimum(a, b), np.maximum(a, b)
    return (np.maximum(np.floor(a), 0).astype(np.int64), np.minimum(np.ceil(b) + 1, size).astype(np.int64))


class Grid:
    """One plane sampling of a body, painted at any position along its normal (see the module docstring)."""

    def __init__(self, body: Body, axes: tuple[int, int, int, int, int], u: np.ndarray, v: np.ndarray) -> None:
        ua, _, va, _, wa = axes
        if not (wa == 2 or va == 2):
            raise ValueError(f"plane axes {axes}: z must be the normal or run down the rows")
        self.body, self.axes, self.u, self.v = body, axes, u, v
        self.u_step = float(u[1] - u[0]) if u.size > 1 else 1.0
        self.v_step = float(v[1] - v[0]) if v.size > 1 else 1.0
        self.inplane = np.flatnonzero((body.lo[:, ua] <= max(u[0], u[-1])) & (body.hi[:, ua] >= min(u[0], u[-1]))
                                      & (body.lo[:, va] <= max(v[0], v[-1])) & (body.hi[:, va] >= min(v[0], v[-1])))
        self._du: dict[int, np.ndarray] = {}
        self._dv: dict[int, np.ndarray] = {}
        self._rows: dict[int, np.ndarray | None] = {}
        self._sections: dict[tuple[int, int, int, int, int], np.ndarray] = {}

    def _along_u(self, k: int) -> np.ndarray:
        if k not in self._du:
            self._du[k] = _norm(self.u, self.body.center[k, self.axes[0]], self.body.radii[k, self.axes[0]],
                                self.body.power[k])
        return self._du[k]

    def _along_v(self, k: int) -> np.ndarray:
        if k not in self._dv:
            self._dv[k] = _norm(self.v, self.body.center[k, self.axes[2]], self.body.radii[k, self.axes[2]],
                                self.body.power[k])
        return self._dv[k]

    def _z_rows(self, k: int) -> np.ndarray | None:
        """Which rows (z running down them) a shape's clip and period keep; None: all of them."""
        if k not in self._rows:
            s, z = self.body.shapes[k], self.v
            keep = None
            if s.clip != (-math.inf, math.inf):
                keep = (z >= s.clip[0]) & (z <= s.clip[1])
            if s.period:
                on = np.mod(z - s.center[2], s.period[0]) < s.period[1]
                keep = on if keep is None else keep & on
            self._rows[k] = keep
        return self._rows[k]

    def paint(self, labels: np.ndarray, w: float) -> None:
        """Paint the body into ``labels`` (rows × cols uint8) for the plane at ``w`` along the normal."""
        ua, _, va, _, wa = self.axes
        b = self.body
        ks = self.inplane[(b.lo[self.inplane, wa] <= w) & (b.hi[self.inplane, wa] >= w)]
        if ks.size == 0:
            return
        p = b.power[ks]
        dw = np.abs((w - b.center[ks, wa]) / b.radii[ks, wa]) ** p
        keep = (dw < 1.0) | b.cone[ks]
        if wa == 2:  # axial: the clip and period decide for the whole plane
            keep &= (b.clip[ks, 0] <= w) & (w <= b.clip[ks, 1])
            periodic = b.pitch[ks] > 0
            keep &= ~periodic | (np.mod(w - b.center[ks, 2], np.where(periodic, b.pitch[ks], 1.0)) < b.duty[ks])
        ks, p, lim = ks[keep], p[keep], 1.0 - dw[keep]
        reach = np.maximum(lim, 0.0) ** (1.0 / p)  # the cross-section's half-extent as a fraction of the radii
        lo_u, hi_u = (b.center[ks, ua] + sign * b.radii[ks, ua] * reach for sign in (-1, 1))
        lo_v, hi_v = (b.center[ks, va] + sign * b.radii[ks, va] * reach for sign in (-1, 1))
        if va == 2:  # z runs down the rows: the clip bounds the rows to visit
            lo_v, hi_v = np.maximum(lo_v, b.clip[ks, 0]), np.minimum(hi_v, b.clip[ks, 1])
        c0, c1 = _index_ranges(float(self.u[0]), self.u_step, self.u.size, lo_u, hi_u)
        r0, r1 = _index_ranges(float(self.v[0]), self.v_step, self.v.size, lo_v, hi_v)
        for k, level, a0, a1, b0, b1 in zip(ks.tolist(), lim.tolist(), c0.tolist(), c1.tolist(), r0.tolist(),
                                            r1.tolist(), strict=True):
            if b.cone[k]:
                _paint_cone(labels, b.shapes[k], self.axes, self.u, self.v, w)
            elif a0 < a1 and b0 < b1:
                self._paint_shape(labels, k, level, a0, a1, b0, b1)

    def _paint_shape(self, labels: np.ndarray, k: int, lim: float, c0: int, c1: int, r0: int, r1: int) -> None:
        """Paint shape ``k`` (not a cone) over its bounding box; ``lim`` = 1 - its normalised distance along the
        normal (how much of its cross-section this plane cuts)."""
        s = self.body.shapes[k]
        du = self._along_u(k)[c0:c1]
        rows = self._z_rows(k) if self.axes[2] == 2 else None
        if rows is not None:
            rows = rows[r0:r1]
        inner = lim * s.inner ** s.power if s.inner else None
        if self.axes[2] == 2 and s.radii[2] >= CYLINDER:
            # a cylinder along its axis: kept rows × columns (the curvature of a 10⁵ mm radius is below a pixel)
            cols = du <= lim
            if inner is not None:
                cols &= du > inner
            if rows is not None and not s.period:  # a clip keeps one run of rows
                kept = np.flatnonzero(rows)
                if kept.size == 0:
                    return
                r0, r1, rows = r0 + int(kept[0]), r0 + int(kept[-1]) + 1, None
            if rows is None and inner is None:  # one band (a convex cross-section)
                on = np.flatnonzero(cols)
                if on.size:
                    labels[r0:r1, c0 + on[0]:c0 + on[-1] + 1] = s.tissue
            else:
                where = cols[None, :] if rows is None else rows[:, None] & cols[None, :]
                np.copyto(labels[r0:r1, c0:c1], np.uint8(s.tissue), where=where)
            return
        np.copyto(labels[r0:r1, c0:c1], np.uint8(s.tissue), where=self._mask(k, lim, inner, rows, c0, c1, r0, r1))

    def _mask(self, k: int, lim: float, inner: float | None, rows: np.ndarray | None, c0: int, c1: int, r0: int,
              r1: int) -> np.ndarray:
        """The cross-section's pixels in its bounding box. A cylinder cut across its axis (axial planes) has the
        same cross-section at every level: computed once per grid."""
        key = (k, c0, c1, r0, r1)
        across = self.axes[4] == 2 and self.body.radii[k, 2] >= CYLINDER
        if across and key in self._sections:
            return self._sections[key]
        du, dv = self._along_u(k)[None, c0:c1], self._along_v(k)[r0:r1, None]
        mask = du <= lim - dv
        if inner is not None:
            mask &= du > inner - dv
        if rows is not None:
            mask &= rows[:, None]
        if across:
            self._sections[key] = mask
        return mask


def _paint_cone(labels: np.ndarray, s: ShapeLike, axes: tuple[int, int, int, int, int], u: np.ndarray,
                v: np.ndarray, w: float) -> None:
    """Paint a tapered cylinder (z-clipped, x/y radii scaled linearly along z) into one plane."""
    ua, _, va, _, wa = axes
    (z0, z1), (k0, k1), c, r = s.clip, s.taper, s.center, s.radii  # type: ignore[misc]
    if wa == 2:  # axial: an ellipse of the radii at this z
        if not z0 <= w <= z1:
            return
        k = k0 + (k1 - k0) * (w - z0) / (z1 - z0)
        du, dv = ((u - c[ua]) / (r[ua] * k)) ** 2, ((v - c[va]) / (r[va] * k)) ** 2
        cols, rows = np.flatnonzero(du <= 1.0), np.flatnonzero(dv <= 1.0)
        if cols.size and rows.size:
            c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
            labels[r0:r1, c0:c1][dv[r0:r1, None] + du[None, c0:c1] <= 1.0] = s.tissue
        return
    zi = np.flatnonzero((v >= z0) & (v <= z1))  # z runs down the rows; contiguous: coordinates are monotonic
    if zi.size == 0:
        return
    k = k0 + (k1 - k0) * (v[zi] - z0) / (z1 - z0)
    lim = 1.0 - ((w - c[wa]) / (r[wa] * k)) ** 2  # per z: how much of the cross-section this plane cuts
    if not (lim > 0).any():
        return
    do = ((u - c[ua]) / r[ua]) ** 2
    oi = np.flatnonzero(do <= max(float(k.max()), 1e-6) ** 2)
    if oi.size == 0:
        return
    o0, o1 = oi[0], oi[-1] + 1
    mask = do[None, o0:o1] <= (k * k * lim)[:, None]
    labels[zi[0]:zi[-1] + 1, o0:o1][mask] = s.tissue
