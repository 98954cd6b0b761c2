"""Read-back verification that runs *while* the copy is still being written.

Re-reading a copy only proves something if the bytes come from the storage, not from the page
cache we just filled. So the verifier works in windows behind the writer: flush what has been
written (``fdatasync``), drop those pages from the cache (``POSIX_FADV_DONTNEED``), read them
back through a separate read-only descriptor and hash them. Because this overlaps the copy
instead of following it, verification costs little wall time (on a station the card and the
share are different devices; in the benchmark they even share one disk).

On systems without ``posix_fadvise`` (Windows) the read-back may be served from the cache; it
still catches anything that went wrong between us and the filesystem.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import xxhash

WINDOW = 64 * 1024 * 1024
_O_BINARY = getattr(os, "O_BINARY", 0)


def _datasync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _drop(fd: int, offset: int, length: int) -> None:
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


class ReadbackVerifier(threading.Thread):
    """Hashes ``path`` back from storage, trailing the writer by up to ``window`` bytes.

    The writer calls :meth:`advance` after each write, :meth:`finish` after its final fsync,
    then ``join()`` and compares :meth:`hexdigest` (or re-raises :attr:`error`).
    """

    def __init__(self, path: Path, sink_fd: int, chunk_size: int, window: int = WINDOW) -> None:
        super().__init__(name="skyreel-copy-readback", daemon=True)
        self.path = path
        self.sink_fd = sink_fd
        self.chunk_size = chunk_size
        self.window = window
        self.error: OSError | None = None
        self.verified = 0
        self._hasher = xxhash.xxh3_128()
        self._written = 0
        self._finished = False
        self._aborted = False
        self._cond = threading.Condition()

    def advance(self, written: int) -> None:
        with self._cond:
            self._written = written
            if written - self.verified >= self.window:
                self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify()

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def _next_target(self) -> tuple[int, bool] | None:
        with self._cond:
            while not (
                self._aborted or self._finished or self._written - self.verified >= self.window
            ):
                self._cond.wait()
            if self._aborted:
                return None
            return self._written, self._finished

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
        except OSError as exc:
            self.error = exc
            return
        buf = bytearray(self.chunk_size)
        view = memoryview(buf)
        try:
            while (step := self._next_target()) is not None:
                target, final = step
                if not final:
                    _datasync(self.sink_fd)  # the writer fsyncs the whole file before finish()
                _drop(fd, self.verified, target - self.verified)
                self._read(fd, view, target)
                if final:
                    return
        except OSError as exc:
            self.error = exc
        finally:
            os.close(fd)

    def _read(self, fd: int, view: memoryview, target: int) -> None:
        os.lseek(fd, self.verified, os.SEEK_SET)
        while self.verified < target:
            want = min(len(view), target - self.verified)
            n = _readinto(fd, view[:want])
            if n == 0:
                raise OSError(5, f"read-back ended at byte {self.verified} of {target}")
            self._hasher.update(view[:n])
            self.verified += n


def _readinto(fd: int, view: memoryview) -> int:
    if hasattr(os, "readv"):
        return os.readv(fd, [view])
    data = os.read(fd, len(view))  # Windows has no readv
    view[: len(data)] = data
    return len(data)
