"""The Storage SCP's spool file: one received C-STORE data set written to disk as its PDVs arrive.

A durable spool (``YEETER_STORE_FSYNC``, the default: every file is on disk before its answer) writes
with ``O_DIRECT`` where the file system allows it: the PDVs are gathered in a page-aligned buffer
taken from a small pool and written in 1 MiB blocks straight to the device, the last bytes short of
a 4 KiB block through the page cache. The flush that follows has one page and the file's metadata left
to write. Through the page cache the same bytes were copied once more, into pages the kernel had to
find first, only to be written out at once by that flush: ``perf`` during ``bench/simulate.py`` showed
that copy as the largest single cost of receiving. A file system that
refuses ``O_DIRECT`` (older tmpfs, some FUSE file systems; ``EINVAL`` on open or on a write) gets the
same bytes through the page cache, from where the refusal came. A spool that need not be durable
writes through the page cache: answering before the disk has the data is its point.

A write error is remembered (``error``) and reported by the SCP's handler as 0xA700, and the file is
closed; nothing raises into the association.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import threading
from pathlib import Path

LOGGER = logging.getLogger("simulations.transport.dimse.storage_scp")  # the SCP's log: where its files are reported
# A fresh file or nothing: O_EXCL fails rather than share a name with another writer
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_O_DIRECT = getattr(os, "O_DIRECT", 0)
BLOCK = 1024 * 1024  # bytes gathered before a direct write: a whole number of any device's blocks
ALIGN = 4096  # offsets, lengths and the buffer's address of a direct write: the largest logical block size
_POOL_SIZE = 16  # buffers kept for reuse (one per association receiving at the same moment)
HEAD = 64 * 1024  # the file's first bytes kept in memory for the check (:mod:`.integrity`): an image's headers


class _Buffers:
    """Page-aligned ``BLOCK``-byte buffers (anonymous ``mmap``) for direct writes, reused warm."""

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, BLOCK)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < _POOL_SIZE:
                self._free.append(buffer)
                return
        buffer.close()


_buffers = _Buffers()


def _write_all(fd: int, data: memoryview) -> None:
    """Write every byte of ``data`` (a short write continues where it stopped)."""
    while data:
        data = data[os.write(fd, data):]


class SpooledDataSet:
    """A C-STORE data set written to a file as its PDVs arrive (preamble and File Meta first).

    Disk writes overlap the network transfer and a large instance never sits in memory whole. The
    file is created with ``O_EXCL`` under a name unique to this host and process; ``finish`` flushes
    it to disk (``fdatasync``) when ``durable``, which also makes it written directly (see the module).
    ``head`` keeps the file's first :data:`HEAD` bytes as written, for the check to walk without reading
    them back from the disk.
    """

    def __init__(self, path: Path, prefix: bytes, *, durable: bool = True) -> None:
        self.path = path
        self.dataset_offset = len(prefix)
        self.size = len(prefix)
        self.durable = durable
        self.direct = False
        self.error: OSError | None = None
        self.head = bytearray()
        self._fd: int | None = None
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._filled = 0  # bytes of the buffer not yet written
        try:
            self._fd = self._open(path)
        except FileNotFoundError:  # the spool folder was removed under us: make it again
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = self._open(path)
            except OSError as exc:
                self._fail(exc)
                return
        except OSError as exc:
            self._fail(exc)
            return
        self._write(memoryview(prefix))

    def _open(self, path: Path) -> int:
        if self.durable and _O_DIRECT:
            try:
                fd = os.open(path, CREATE_FLAGS | _O_DIRECT, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # the file system refuses direct I/O at open (older tmpfs, some FUSE file systems)
                path.unlink(missing_ok=True)
            else:
                self.direct = True
                self._buffer = _buffers.take()
                self._view = memoryview(self._buffer)
                return fd
        return os.open(path, CREATE_FLAGS, 0o644)

    def add(self, fragment: memoryview) -> None:
        self.size += len(fragment)
        self._write(fragment)

    def _write(self, data: memoryview) -> None:
        if self._fd is None:
            return
        if len(self.head) < HEAD:
            self.head += data[:HEAD - len(self.head)]
        try:
            if not self.direct:
                _write_all(self._fd, data)
                return
            assert self._view is not None
            while data:
                n = min(len(data), BLOCK - self._filled)
                self._view[self._filled:self._filled + n] = data[:n]
                self._filled += n
                data = data[n:]
                if self._filled == BLOCK:
                    self._flush_block(BLOCK)
        except OSError as exc:
            self._fail(exc)

    def _flush_block(self, length: int, *, keep: int = 0) -> None:
        """Write the buffer's first ``length`` bytes (a multiple of ALIGN) directly; the ``keep`` bytes after
        them move to its start. A refusal (``EINVAL``) sends them all through the page cache, and the rest."""
        assert self._fd is not None and self._view is not None
        try:
            if os.write(self._fd, self._view[:length]) != length:
                raise OSError(errno.EIO, f"short direct write to {self.path}")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._leave_direct()
            return
        self._view[:keep] = self._view[length:length + keep]
        self._filled = keep

    def _leave_direct(self) -> None:
        """Write through the page cache from here on, starting with the bytes gathered so far."""
        assert self._fd is not None and self._view is not None
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False
        _write_all(self._fd, self._view[:self._filled])
        self._filled = 0

    def finish(self) -> None:
        """Write what is gathered, flush (when durable) and close the file: the data set is complete."""
        if self._fd is not None and self.direct and self._filled:
            # the whole blocks directly; the last few bytes (under ALIGN) through the page cache: a padded
            # block cut back with ftruncate made the file system read that block back to zero its end
            whole = self._filled // ALIGN * ALIGN
            try:
                if whole:
                    self._flush_block(whole, keep=self._filled - whole)
                if self.direct:
                    self._leave_direct()
            except OSError as exc:
                self._fail(exc)
        fd, self._fd = self._fd, None
        self._release()
        if fd is not None:
            try:
                if self.durable:  # the data (and the size that makes it readable); a rename needs no more
                    getattr(os, "fdatasync", os.fsync)(fd)
            except OSError as exc:
                self._fail(exc)
            try:
                os.close(fd)
            except OSError as exc:
                self._fail(exc)

    def discard(self) -> None:
        """Close and remove the file (not stored, or the association was lost mid-transfer)."""
        self._drop()
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            LOGGER.warning("cannot remove the partial file %s", self.path)

    def _release(self) -> None:
        view, buffer, self._view, self._buffer = self._view, self._buffer, None, None
        if view is not None:
            view.release()
        if buffer is not None:
            _buffers.give(buffer)

    def _fail(self, exc: OSError) -> None:
        self.error = self.error or exc
        self._drop()

    def _drop(self) -> None:
        """Close the file without a word (being thrown away, or already failed: the first error is the one
        reported) and give back the buffer."""
        fd, self._fd = self._fd, None
        self._release()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
