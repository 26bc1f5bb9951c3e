"""The anatomy disk cache (generators.dicom.anatomy_cache): shared across processes, never stale, never fatal."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from generators.dicom import anatomy_cache, phantoms
from generators.terms import Laterality, Plane
from simulations.pool import PixelPool

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("HEAD", Laterality.NONE, Plane.AXIAL, 64, 64, (600.0, 612.5))


def _clear() -> None:
    for fn in (phantoms.label_levels, phantoms.projection, phantoms._processed, phantoms.ct_scout):
        fn.cache_clear()


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """Each test starts and ends with empty in-process caches and the process's own cache configuration."""
    saved = anatomy_cache.current()
    _clear()
    yield
    anatomy_cache.configure(*saved)
    _clear()


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def _radiograph_digest() -> str:
    image = phantoms.radiograph("HAND", Laterality.RIGHT, "PA", 320, 256, seed=7)
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_a_cache_written_by_another_process_gives_identical_pixels(tmp_path: Path) -> None:
    code = ("import hashlib, sys; from generators.dicom import anatomy_cache, phantoms; "
            "from generators.terms import Laterality; anatomy_cache.configure(sys.argv[1]); "
            "print(hashlib.sha256(phantoms.radiograph('HAND', Laterality.RIGHT, 'PA', 320, 256, seed=7)"
            ".tobytes()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120, check=True).stdout.strip()
    written = _files(tmp_path)
    assert [p.name.split("-")[0] for p in written] == ["_processed"]

    anatomy_cache.configure(tmp_path)
    assert isinstance(phantoms._processed("HAND", Laterality.RIGHT, "PA", 320, 256, 12), np.memmap)  # a hit
    _clear()
    assert _radiograph_digest() == other
    assert _files(tmp_path) == written  # nothing recomputed, nothing rewritten

    anatomy_cache.configure(None)
    _clear()
    assert _radiograph_digest() == other  # the same pixels as without any cache


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_or_truncated_cache_file_is_recomputed(tmp_path: Path, damage: str) -> None:
    anatomy_cache.configure(tmp_path)
    fresh = np.array(phantoms.label_levels(*LEVELS))
    (path,) = _files(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x93NUMPY nonsense" * 40,
                      "empty": b""}[damage])
    _clear()

    again = phantoms.label_levels(*LEVELS)
    assert not isinstance(again, np.memmap)  # recomputed, not loaded
    assert np.array_equal(again, fresh)
    _clear()
    assert np.array_equal(np.load(path), fresh)  # and rewritten whole
    assert isinstance(phantoms.label_levels(*LEVELS), np.memmap)


def test_a_model_version_change_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anatomy_cache.configure(tmp_path)
    phantoms.label_levels(*LEVELS)
    (first,) = _files(tmp_path)
    assert first.parent.name == anatomy_cache.MODEL_VERSION

    monkeypatch.setattr(anatomy_cache, "MODEL_VERSION", "an-edited-model")
    _clear()
    assert not isinstance(phantoms.label_levels(*LEVELS), np.memmap)  # computed anew, not served stale
    assert {p.parent.name for p in _files(tmp_path)} == {"an-edited-model", first.parent.name}


def test_the_model_version_is_a_hash_of_the_phantom_sources() -> None:
    digest = hashlib.sha256()
    for name in ("phantoms.py", "raster.py", "anatomy_cache.py"):
        digest.update((ROOT / "generators" / "dicom" / name).read_bytes())
    assert anatomy_cache.MODEL_VERSION == digest.hexdigest()[:16]


def test_the_cache_stays_under_its_size_bound_dropping_the_least_recently_used(tmp_path: Path) -> None:
    one = 2 * 64 * 64 + 128  # two 64 × 64 uint8 levels and the .npy header
    anatomy_cache.configure(tmp_path, limit_bytes=int(2.2 * one))
    for z in (500.0, 550.0, 600.0):
        phantoms.label_levels("HEAD", Laterality.NONE, Plane.AXIAL, 64, 64, (z, z + 5.0))
    files = _files(tmp_path)
    assert sum(p.stat().st_size for p in files) <= 2.2 * one
    assert len(files) == 1  # down to 80 % of the bound: the newest only
    assert np.array_equal(np.load(files[0]), phantoms.label_levels("HEAD", Laterality.NONE, Plane.AXIAL, 64, 64,
                                                                   (600.0, 605.0)))


def test_an_unwritable_cache_directory_only_switches_the_cache_off(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    anatomy_cache.configure(blocker / "cache")
    levels = phantoms.label_levels(*LEVELS)
    assert anatomy_cache.current()[0] is None
    anatomy_cache.configure(None)
    _clear()
    assert np.array_equal(levels, phantoms.label_levels(*LEVELS))


def test_the_pixel_pool_workers_share_the_parents_cache(tmp_path: Path) -> None:
    anatomy_cache.configure(tmp_path, limit_bytes=123_456_789)
    with PixelPool(1) as pool:
        assert pool.submit(anatomy_cache.current).result(timeout=120) == (str(tmp_path), 123_456_789)
