"""The pixel pool's workers run below the run's CPU priority, so the run's network exchanges get the CPU first."""

from __future__ import annotations

import os

from simulations.pool import PixelPool


def _niceness() -> int:
    return os.nice(0)


def test_the_pixel_workers_run_the_given_steps_below_the_parent() -> None:
    parent = os.nice(0)
    with PixelPool(1, niceness=3) as pool:
        assert pool.submit(_niceness).result(timeout=120) == min(parent + 3, 19)
    with PixelPool(1) as pool:  # 0: the parent's own priority
        assert pool.submit(_niceness).result(timeout=120) == parent


def _freed_bytes_kept() -> int:
    """Allocate, touch and free a 16 MB array, then return the free bytes glibc's heap still holds."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    block = np.ones(16 * 1024 * 1024, np.uint8)
    del block
    return int(libc.mallinfo2().fordblks)


def test_a_pixel_worker_keeps_the_memory_it_frees_for_its_next_arrays() -> None:
    """glibc would unmap a freed 16 MB block (or trim the heap): the next slice's arrays would then come from
    pages the kernel faults in and zeroes again."""
    with PixelPool(1) as pool:
        assert pool.submit(_freed_bytes_kept).result(timeout=120) >= 16 * 1024 * 1024
