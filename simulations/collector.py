"""Python's cyclic garbage collector while a run executes in this process: young collections rarer.

A run allocates millions of short-lived objects (DIMSE PDUs, pydicom elements, ORM rows, events), and
with CPython's default first threshold (700 allocations) the collector traverses the young generation
tens of thousands of times a run, mostly finding nothing: ``bench/simulate.py`` measured about a second
of the run process's CPU time in ``gc_collect_main``. While at least one run executes here, the first
threshold is 50,000; the older generations keep their default multipliers, so a full collection still
follows every 100 young ones (and CPython's 25 % rule). What the process held before the first run began
(modules, the catalog, Django's machinery: most of its objects) is moved out of the collector's sight for
the duration (``gc.freeze``), so those full collections traverse what the runs made, not the whole process
again: the same bench measured 0.44 s in five of them. The last run to end restores what was set before and
hands the frozen objects back (with the few hundred CPython freezes at its start: the collector sees them again).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def run_collection() -> Iterator[None]:
    """Raise the young generation's threshold and freeze what is there for the duration (nested and concurrent
    runs share it)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), *_saved[1:])
            gc.freeze()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
                gc.unfreeze()
