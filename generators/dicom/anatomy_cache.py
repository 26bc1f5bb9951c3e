"""A disk cache of the deterministic anatomy arrays (label stacks, processed radiographs, CT scouts).

Projections themselves are not stored: only the processed images made from them are used.

The pixel pool's processes and later runs each used to recompute the same arrays; with a cache directory
configured (:func:`configure`), a function decorated with :func:`disk_cached` first looks for its result on
disk. Files are ``.npy``, loaded with ``np.load(mmap_mode="r")`` (read-only, paged in on use, shared by the
processes through the page cache) and written atomically (a unique temporary name, then ``os.replace``), so a
reader never sees half a file and two processes computing the same array at once both succeed.

* Key: the function's name and the ``repr`` of its arguments, under a directory named after
  :data:`MODEL_VERSION`, a hash of the source of the modules that define the anatomy: a change to the model
  or the rasteriser never serves stale arrays.
* A file numpy cannot load (truncated, bad header, not an array) is recomputed and rewritten, never an error.
* Size: bounded by ``limit_bytes`` (default :data:`DEFAULT_LIMIT_BYTES`); after a write the least recently
  used files (hits refresh a file's modification time), older model versions first, are removed until the
  directory is under 80 % of the bound.
* Unconfigured (the default: no directory) nothing touches the disk. An unwritable directory is logged once
  and the cache is switched off for the process.

Django-free: the pool workers configure it from their initializer (:mod:`simulations.pool`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_LIMIT_BYTES = 2 * 1024**3
_MODEL_MODULES = ("phantoms.py", "raster.py", "anatomy_cache.py")


def _model_version() -> str:
    digest = hashlib.sha256()
    for name in _MODEL_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


MODEL_VERSION = _model_version()


class _Config:
    directory: Path | None = None
    limit_bytes: int = DEFAULT_LIMIT_BYTES


_config = _Config()


def configure(directory: str | os.PathLike[str] | None, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
    """Use ``directory`` (created if missing) for this process's anatomy cache; None switches it off."""
    _config.directory = Path(directory) if directory else None
    _config.limit_bytes = limit_bytes


def current() -> tuple[str | None, int]:
    """This process's configuration as :func:`configure`'s arguments (picklable: for worker processes)."""
    return (str(_config.directory) if _config.directory else None, _config.limit_bytes)


P = ParamSpec("P")


def disk_cached(fn: Callable[P, np.ndarray]) -> Callable[P, np.ndarray]:
    """Cache ``fn``'s array result on disk, keyed by its arguments' ``repr`` (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> np.ndarray:
        root = _config.directory
        if root is None:
            return fn(*args, **kwargs)
        key = hashlib.sha256(repr((args, sorted(kwargs.items()))).encode()).hexdigest()[:40]
        path = root / MODEL_VERSION / f"{fn.__name__}-{key}.npy"
        cached = _load(path)
        if cached is not None:
            return cached
        result = fn(*args, **kwargs)
        _store(path, result)
        return result

    return wrapper


def _load(path: Path) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # truncated, corrupt header, not an .npy
        logger.warning("anatomy cache: recomputing unreadable %s (%s)", path.name, exc)
        return None
    with contextlib.suppress(OSError):  # a hit: the file is recently used
        os.utime(path)
    return array


def _store(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(partial, path)
    except OSError as exc:
        logger.warning("anatomy cache: cannot write under %s (%s); caching off for this process", path.parent, exc)
        with contextlib.suppress(OSError):
            partial.unlink()
        _config.directory = None
        return
    with contextlib.suppress(OSError):  # trimming is best effort: a failed scan leaves the files for the next write
        _bound(path.parent.parent, _config.limit_bytes)


def _bound(root: Path, limit_bytes: int) -> None:
    """Remove the least recently used files (other model versions first) until the cache is under 80 % of
    ``limit_bytes``."""
    files = []
    for version in root.iterdir() if root.is_dir() else ():
        for entry in os.scandir(version) if version.is_dir() else ():
            if entry.name.endswith(".npy"):
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # removed by another process meanwhile
                    continue
                files.append((version.name == MODEL_VERSION, stat.st_mtime_ns, stat.st_size, entry.path))
    total = sum(f[2] for f in files)
    if total <= limit_bytes:
        return
    for _, _, size, name in sorted(files):
        if total <= 0.8 * limit_bytes:
            break
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            os.unlink(name)
        total -= size
