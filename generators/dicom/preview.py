"""PNG thumbnails of a series' representative image for the simulator page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def preview_path(study_dir: Path, series_number: int) -> Path:
    """Where the preview of a series is written: beside its instances, not a ``.dcm`` file."""
    return study_dir / f"preview_{series_number:03d}.png"


def write_preview_png(pixels: np.ndarray, path: Path, *, center: float, width: float, max_size: int = 512) -> Path:
    """Write ``pixels`` (stored values) as an 8-bit PNG windowed like a viewer's linear VOI LUT.

    PS3.3 C.11.2.1.2.1 (linear window): values below ``center - width/2`` are black, above
    ``center + width/2`` white. Large images are reduced to ``max_size`` on their long side.
    """
    lo = center - width / 2.0
    img = np.clip((pixels.astype(np.float32) - lo) * (255.0 / max(width, 1.0)), 0, 255).astype(np.uint8)
    image = Image.fromarray(img, mode="L")
    long_side = max(image.size)
    if long_side > max_size:
        scale = max_size / long_side
        image = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                             Image.LANCZOS, reducing_gap=2.0)  # box-reduced first: 1/3 the time, same look
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=1)  # a thumbnail: speed over the last few bytes
    return path


def write_frame_strip_png(frames: np.ndarray, path: Path, *, center: float, width: float, count: int = 4,
                          max_size: int = 768) -> Path:
    """A cine run's preview: ``count`` frames evenly spaced from first to last, side by side, windowed like
    :func:`write_preview_png` (so the bolus or the loop's motion shows in one still image)."""
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    strip = np.concatenate([frames[k] for k in picks], axis=1)
    return write_preview_png(strip, path, center=center, width=width, max_size=max_size)
