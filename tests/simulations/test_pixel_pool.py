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
