"""The pixel-generation process pool: workers that die with their parent and leave SIGINT to it.

Without this, ``kill -9`` of ``runsim`` left its pool workers (and multiprocessing's resource
tracker, which waits for them) alive for good, and a Ctrl-C in a terminal — delivered by the
terminal to the whole process group — raised ``KeyboardInterrupt`` in every worker, printing a
traceback per worker while the parent was trying to finish the steps in flight.

This module must stay importable without Django: spawned workers import it to run the initializer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from generators.dicom import anatomy_cache

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _keep_freed_memory(libc: ctypes.CDLL | None) -> None:
    """Let glibc keep the memory a worker frees for its next arrays instead of handing it back.

    By default a block over 128 KiB–32 MiB is ``mmap``-ed and unmapped again on free, and the heap
    is trimmed past 128 KiB: each slice's temporary arrays then come from pages the kernel must
    fault in and zero again (and on a virtual machine that reports freed memory to its host, which
    the host must supply again). Kept, a worker's memory stays at its largest study's working set
    and is reused warm. Not glibc (``mallopt`` missing): nothing to do.
    """
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _die_with_parent(parent_pid: int, libc: ctypes.CDLL | None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (``prctl(2)`` PR_SET_PDEATHSIG);
    elsewhere, a daemon thread polls ``getppid()``. Either way a parent already gone means exit now."""
    armed = False
    if libc is not None:
        try:
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except AttributeError:
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def worker_init(parent_pid: int, anatomy: tuple[str | None, int], niceness: int = 0) -> None:
    """Pool worker initializer: ignore SIGINT (the parent alone decides what Ctrl-C means), die
    with the parent process, share the parent's anatomy disk cache (directory, size bound) and run
    ``niceness`` steps below the parent's CPU priority (``nice(2)``)."""
    anatomy_cache.configure(*anatomy)
    libc = _libc()
    _keep_freed_memory(libc)
    if niceness:
        os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid, libc)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class PixelPool(ProcessPoolExecutor):
    """A spawn-context pool whose workers start with SIGINT blocked until :func:`worker_init` ignores it.

    Workers are spawned lazily inside :meth:`submit`; blocking SIGINT in the submitting thread for
    that call makes the new interpreter inherit the blocked mask (``fork``/``exec`` keep it), which
    closes the window between the worker's start and its initializer. A signal arriving meanwhile
    stays pending for the parent and is delivered when the mask is restored.
    """

    def __init__(self, max_workers: int, *, niceness: int = 0) -> None:
        # spawn: the workers must not inherit the receivers' threads and sockets.
        # niceness: pixels are bulk work; a lower priority lets the parent's network exchanges (each C-STORE
        # answer, MPPS, worklist query a peer and the next patient wait for) take the CPU first.
        super().__init__(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                         initializer=worker_init, initargs=(os.getpid(), anatomy_cache.current(), niceness))

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().submit(fn, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def kill_workers(self) -> None:
        """Stop at once (a second Ctrl-C, an aborted run): terminate the workers, drop queued work."""
        for process in list((getattr(self, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()
        self.shutdown(wait=False, cancel_futures=True)
