"""Moving phantoms for fluoroscopy and angiography runs: 8-bit frames, one call per frame.

Values are the X-ray intensity reaching the detector (Pixel Intensity Relationship LIN): bone and contrast
attenuate, so they are dark on a bright field, as on an unsubtracted angiogram or a fluoroscopy screen.

- angiography (XA): a seeded vessel tree (a trunk from the catheter tip with branches) fills along its
  length as the bolus front advances, then washes out, over a skull (cerebral) or the femur and tibia
  (lower extremity);
- barium swallow (RF, esophagus): a bolus travels down the oesophagus in front of the cervical and thoracic spine;
- VCUG (RF, bladder): the bladder fills through the catheter and grows, over the bony pelvis;
- upper GI (RF, abdomen): barium fills the stomach from the fundus to the antrum and enters the duodenum.

The static parts (anatomy, the vessel map) are computed once per series and cached; a frame is one
vectorised blend of them with the frame's contrast and a little quantum noise.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SIZE = 512


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x / size, y / size  # 0..1 across, 0..1 down


@lru_cache(maxsize=8)
def _vessel_map(seed: int, size: int, root: tuple[float, float], heading: float, spread: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(opacity 0..1, path length from the catheter tip 0..1) of a branching vessel tree."""
    rng = np.random.default_rng(seed)
    opacity = np.zeros((size, size), np.float32)
    along = np.full((size, size), np.inf, np.float32)
    stack = [(root[0] * size, root[1] * size, heading, 5.0, 0.0, 0)]
    while stack:
        x, y, angle, radius, dist, depth = stack.pop()
        steps = int(rng.integers(30, 60)) if depth else 110
        for _ in range(steps):
            angle += float(rng.normal(0, 0.06))
            x += math.cos(angle) * 2.0
            y += math.sin(angle) * 2.0
            dist += 2.0
            if not (4 <= x < size - 4 and 4 <= y < size - 4):
                break
            r = max(radius, 1.0)
            x0, x1, y0, y1 = int(x - r - 1), int(x + r + 2), int(y - r - 1), int(y + r + 2)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            d2 = ((xx - x) ** 2 + (yy - y) ** 2) / (r * r)
            profile = np.sqrt(np.clip(1 - d2, 0, 1)).astype(np.float32)  # chord length through a round vessel
            np.maximum(opacity[y0:y1, x0:x1], profile, out=opacity[y0:y1, x0:x1])
            np.minimum(along[y0:y1, x0:x1], np.where(profile > 0, dist, np.inf), out=along[y0:y1, x0:x1])
        if depth < 4 and radius > 1.2:
            for side in (-1, 1):
                stack.append((x, y, angle + side * spread * float(rng.uniform(0.6, 1.2)), radius * 0.72, dist,
                              depth + 1))
    finite = np.isfinite(along)
    along = np.where(finite, along / max(float(along[finite].max()), 1.0), 1.0).astype(np.float32)
    return opacity, along


@lru_cache(maxsize=8)
def _anatomy(kind: str, size: int) -> np.ndarray:
    """Attenuation (0..1) of the static anatomy of a scene."""
    x, y = _grid(size)
    att = np.zeros((size, size), np.float32)
    if kind == "head":
        r = np.hypot((x - 0.5) / 0.42, (y - 0.5) / 0.47)
        att += 0.35 * ((r < 1.0) & (r > 0.92)) + 0.12 * (r < 0.92)
        att += 0.25 * np.exp(-(((x - 0.5) / 0.18) ** 2 + ((y - 0.78) / 0.05) ** 2))  # skull base
    elif kind == "leg":
        att += 0.15 * (np.abs(x - 0.5) < 0.36)
        att += 0.45 * (np.abs(x - 0.44 - 0.04 * y) < 0.05)  # femur / tibia shaft
        att += 0.2 * (np.abs(x - 0.62) < 0.025) * (y > 0.55)  # fibula
    elif kind == "neck":
        att += 0.12 * (np.abs(x - 0.5) < 0.4)
        for k in range(9):  # vertebral bodies, lateral projection
            att += 0.35 * ((np.abs(x - 0.62) < 0.07) & (np.abs(y - (0.06 + k * 0.11)) < 0.045))
    elif kind == "pelvis":
        att += 0.15 * (np.hypot((x - 0.5) / 0.48, (y - 0.5) / 0.45) < 1)
        for side in (-1, 1):
            att += 0.3 * (np.hypot((x - 0.5 - side * 0.28) / 0.16, (y - 0.3) / 0.2) < 1)  # iliac wings
            att += 0.4 * (np.hypot((x - 0.5 - side * 0.33) / 0.06, (y - 0.75) / 0.06) < 1)  # femoral heads
        att += 0.3 * ((np.abs(x - 0.5) < 0.06) & (y < 0.35))  # sacrum
    else:  # abdomen
        att += 0.14 * (np.abs(x - 0.5) < 0.45)
        for k in range(6):
            att += 0.3 * ((np.abs(x - 0.5) < 0.06) & (np.abs(y - (0.08 + k * 0.16)) < 0.06))
    return att


@lru_cache(maxsize=4)
def _noise_bank(seed: int, n: int) -> np.ndarray:
    """Quantum noise (sigma 3) for twice a frame: each frame reads a window of it at its own offset."""
    return (np.random.default_rng([seed, 1]).standard_normal(2 * n, dtype=np.float32) * 3.0).astype(np.float32)


def _expose(att: np.ndarray, seed: int, frame: int) -> np.ndarray:
    """Detector intensity (Beer-Lambert) of ``att`` plus noise, as 8-bit stored values; float32 in place."""
    out = np.multiply(att, np.float32(-2.2), dtype=np.float32)
    np.exp(out, out=out)
    out *= np.float32(235.0)
    bank = _noise_bank(seed, out.size)
    offset = int(np.random.default_rng([seed, frame]).integers(0, out.size))
    out += bank[offset:offset + out.size].reshape(out.shape)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def angiogram(body_part: str, frame: int, frames: int, *, seed: int, size: int = SIZE) -> np.ndarray:
    """Frame ``frame`` of ``frames`` of a DSA run: the bolus fills the tree from the tip, then washes out."""
    head = body_part.upper() in {"HEAD", "BRAIN", "CAROTID", "NECK"}
    if head:
        opacity, along = _vessel_map(seed, size, (0.5, 0.9), -math.pi / 2, 0.55)
    else:
        opacity, along = _vessel_map(seed, size, (0.45, 0.02), math.pi / 2, 0.35)
    t = (frame + 0.5) / max(frames, 1)
    front = 1.6 * t  # the front reaches the tree's end at ~60 % of the run
    filled = np.subtract(np.float32(front), along)
    filled *= np.float32(8.0)
    np.clip(filled, 0, 1, out=filled)
    filled *= opacity
    filled *= np.float32(0.55 * min(max(1.0 - (t - 0.7) * 2.5, 0.25), 1.0))  # washout after 70 % of the run
    att = filled
    att += _anatomy("head" if head else "leg", size)
    return _expose(att, seed, frame)


def fluoroscopy(body_part: str, frame: int, frames: int, *, seed: int, size: int = SIZE) -> np.ndarray:
    """Frame ``frame`` of ``frames`` of a fluoroscopy run of the oesophagus, the bladder or the stomach."""
    part = body_part.upper()
    x, y = _grid(size)
    t = (frame + 0.5) / max(frames, 1)
    if part == "ESOPHAGUS":
        centre = 0.45 + 0.03 * np.sin(y * 5)
        tube = np.abs(x - centre) < 0.025 + 0.01 * np.sin(y * 17 + 1.0)
        head_pos = -0.2 + 1.4 * t  # the bolus head goes down the screen; its tail follows 0.3 behind
        bolus = tube & (y < head_pos) & (y > head_pos - 0.3)
        att = _anatomy("neck", size) + 0.6 * bolus
    elif part == "BLADDER":
        fill = 0.15 + 0.85 * t
        bladder = np.hypot((x - 0.5) / (0.2 * fill ** 0.5), (y - 0.62) / (0.16 * fill ** 0.5)) < 1
        catheter = (np.abs(x - 0.5) < 0.004) & (y > 0.62)
        att = _anatomy("pelvis", size) + 0.45 * bladder + 0.3 * catheter
    else:
        fill = t
        stomach = np.hypot((x - 0.58 + 0.1 * y) / 0.12, (y - 0.42) / 0.22) < 1
        filled = stomach & (y < 0.2 + 0.5 * fill)
        duodenum = (np.hypot(x - 0.42, y - 0.62) < 0.1) & (np.hypot(x - 0.42, y - 0.62) > 0.07) & (fill > 0.7)
        att = _anatomy("abdomen", size) + 0.5 * filled + 0.4 * duodenum
    return _expose(att.astype(np.float32), seed, frame)


def pixel_spacing(body_part: str, size: int = SIZE) -> float:
    """Imager pixel spacing (mm) of the detector field used for the part: 30 cm head/leg, 40 cm trunk."""
    field = 300.0 if body_part.upper() in {"HEAD", "BRAIN", "LEG", "EXTREMITY", "ESOPHAGUS"} else 400.0
    return round(field / size, 4)
