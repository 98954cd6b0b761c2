"""The verified copy: card file -> share, hashed while read, verified before it counts.

The footage on a card cannot be shot again, so this routine is deliberately paranoid:

* the source is opened read-only (``O_RDONLY``) and nothing is ever written to the card;
* the destination is confined to the share root (no absolute paths, no ``..``, no symlink that
  leads out) — anything else raises :class:`CopyRefused`;
* data is hashed (xxh3-128) *while* it is read, and written under a temporary name of this
  station's own (``.<name>.<station>.skyreel-partial``: two stations that see one card never
  share, or unlink, each other's partial) in the destination directory; the temp file is fsynced,
  read back
  and hashed again (by default), and only then renamed atomically into place (``os.replace``)
  and the directory fsynced. Verifying *before* the rename means a file with the final name has
  always been verified: a crash at any point leaves at most a partial file, never a wrong one;
* any failure (card pulled, EIO, ENOSPC, the source changing under us) removes the partial file
  and raises :class:`CopyFailed` with a reason, a retryable flag and a failure ``kind`` (see
  ``protocol.FailureKind``): a full share is ``no_space`` (checked before the copy starts, too,
  so a copy that cannot fit does not fill the share first); what went wrong at the share —
  writing, flushing, reading back, renaming — is ``destination``, with the real cause, never
  "source disappeared".

Throughput: a reader thread reads into a small pool of reusable buffers and hashes them; the
calling thread writes them. Reading the card and writing the share thus overlap, which is what
lets a hashing copy keep up with ``cp`` (see ``benchmarks/copy_throughput.py``).

``opener``/``writer`` are a documented test seam: callables that open the source / temp file and
return raw file objects. Tests pass wrappers around real files that raise EIO or ENOSPC at a
chosen offset; production uses :func:`open_source` and :func:`open_partial`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import re
import shutil
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import xxhash

from detector.paths import PathRefused, confine
from detector.protocol import HASH_ALGO, FailureKind
from detector.readback import ReadbackVerifier

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024
#: Buffers in flight between the reader and the writer (CHUNK_SIZE each).
PIPELINE_DEPTH = 4
PARTIAL_SUFFIX = ".skyreel-partial"
WRITEBACK_WINDOW = 32 * 1024 * 1024
MAX_NAME_BYTES = 255
_STATION_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_NO_SPACE = frozenset(c for c in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if c is not None)

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class CopyError(Exception):
    """A copy that did not happen; ``reason`` is sent to the hub as is."""

    retryable: bool = False
    kind: FailureKind = "internal"

    def __init__(
        self, reason: str, *, retryable: bool | None = None, kind: FailureKind | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if retryable is not None:
            self.retryable = retryable
        if kind is not None:
            self.kind = kind


class CopyRefused(CopyError):
    """Permanent: the request itself is unacceptable (escaping path, the card changed)."""

    retryable = False
    kind: FailureKind = "refused"


class CopyFailed(CopyError):
    """The copy was attempted and failed (I/O error, card pulled, disk full)."""

    retryable = True
    kind: FailureKind = "source"


@dataclass(frozen=True)
class CopyOutcome:
    destination: str  # share-relative POSIX path, as requested
    size: int
    hash: str
    algo: str = HASH_ALGO
    skipped: bool = False  # already present with the right size and hash


class RawSource(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class RawSink(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


Opener = Callable[[Path], RawSource]
Writer = Callable[[Path], RawSink]
Progress = Callable[[int, int], None]


def open_source(path: Path) -> RawSource:
    """Open a card file strictly read-only (and never through a symlink)."""
    fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW)
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    return open(fd, "rb", buffering=0, closefd=True)


def open_partial(path: Path) -> RawSink:
    """Create the temp file fresh (a stale partial, or a symlink planted there, is removed)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW
    fd = os.open(path, flags, 0o644)
    return open(fd, "wb", buffering=0, closefd=True)


def station_tag(station: str) -> str:
    """A station (detector) id as a file-name-safe tag, at most 40 characters (pure)."""
    return _STATION_UNSAFE.sub("_", station)[:40]


def partial_path(final: Path, station: str = "") -> Path:
    """The temp name of a copy to ``final`` by ``station``: the same for every attempt of that
    station (a restarted detector replaces its own stale partial), different for another."""
    tag = f".{station_tag(station)}" if station else ""
    name = f".{final.name}{tag}{PARTIAL_SUFFIX}"
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(final.name.encode()).hexdigest()[:32]
        name = f".{digest}{tag}{PARTIAL_SUFFIX}"
    return final.with_name(name)


def is_no_space(exc: OSError) -> bool:
    """A full file system or an exhausted quota (pure)."""
    return exc.errno in _NO_SPACE


def _describe_os_error(exc: OSError, where: str, *, side: str = "source") -> CopyFailed:
    """A CopyFailed naming the real cause; ``side`` is which end failed: "source" (the card)
    or "destination" (the share)."""
    code = exc.errno
    name = errno.errorcode.get(code or 0, str(code))
    if is_no_space(exc):
        return CopyFailed(f"destination full ({name}) {where}", kind="no_space")
    if side == "destination":
        retryable = code not in (errno.EACCES, errno.EPERM, errno.EROFS)
        return CopyFailed(
            f"destination error ({name}) {where}: {exc.strerror or exc}",
            retryable=retryable,
            kind="destination",
        )
    if code in (errno.ENOENT, getattr(errno, "ENODEV", -1), getattr(errno, "ENXIO", -1)):
        return CopyFailed(f"source disappeared (card removed?) {where}: {exc.strerror}")
    if code == errno.EIO:
        return CopyFailed(f"I/O error (card pulled or failing?) {where}")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CopyFailed(f"permission denied {where}: {exc.strerror}", retryable=False)
    return CopyFailed(f"{exc.strerror or exc} {where}")


def check_space(directory: Path, needed: int) -> None:
    """Refuse a copy that cannot fit before writing any of it (CopyFailed, kind no_space)."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # the copy itself will tell
    if free < needed:
        raise CopyFailed(f"destination full: {free} bytes free, {needed} needed", kind="no_space")


class _Reader(threading.Thread):
    """Reads and hashes the source into pooled buffers; hands (buffer, n) to the writer."""

    def __init__(self, source: RawSource, chunk_size: int, depth: int, limit: int) -> None:
        super().__init__(name="skyreel-copy-reader", daemon=True)
        self.source = source
        self.limit = limit  # read one byte past the expected size to notice growth
        self.free: queue.Queue[bytearray | None] = queue.Queue()
        self.full: queue.Queue[tuple[bytearray, int] | BaseException | None] = queue.Queue()
        for _ in range(depth):
            self.free.put(bytearray(chunk_size))
        self.stop = threading.Event()
        self.hasher = xxhash.xxh3_128()
        self.total = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                buf = self.free.get()
                if buf is None or self.stop.is_set():
                    return
                view = memoryview(buf)
                room = min(len(buf), self.limit + 1 - self.total)
                n = self.source.readinto(view[:room]) or 0
                if n == 0:
                    self.full.put(None)
                    return
                self.hasher.update(view[:n])
                self.total += n
                self.full.put((buf, n))
                if self.total > self.limit:
                    self.full.put(None)
                    return
        except BaseException as exc:  # handed to the writer, which raises it in its thread
            self.full.put(exc)

    def abort(self) -> None:
        self.stop.set()
        self.free.put(None)


def _write_all(sink: RawSink, view: memoryview) -> None:
    while view:
        n = sink.write(view)
        if n is None or n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def _pipe(
    source: RawSource,
    sink: RawSink,
    expected: int,
    chunk_size: int,
    progress: Progress | None,
    cancel: threading.Event | None,
    verifier: ReadbackVerifier | None,
) -> tuple[int, str]:
    reader = _Reader(source, chunk_size, PIPELINE_DEPTH, expected)
    reader.start()
    written = 0
    flushed = 0
    try:
        while True:
            item = reader.full.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                if isinstance(item, OSError):
                    raise _describe_os_error(item, f"reading the card at byte {reader.total}")
                raise item
            buf, n = item
            try:
                _write_all(sink, memoryview(buf)[:n])
            except OSError as exc:
                where = f"writing the share at byte {written}"
                raise _describe_os_error(exc, where, side="destination") from exc
            written += n
            reader.free.put(buf)
            if verifier is not None:
                verifier.advance(written)
            elif written - flushed >= WRITEBACK_WINDOW:
                _start_writeback(sink.fileno(), flushed, written - flushed)
                flushed = written
            if progress is not None:
                progress(min(written, expected), expected)
            if cancel is not None and cancel.is_set():
                raise CopyFailed("copy cancelled (detector stopping)", kind="cancelled")
    finally:
        reader.abort()
        reader.join()
    if written != expected:
        raise CopyFailed(
            f"source changed size during copy: read {written} bytes, expected {expected} "
            "(card pulled or file rewritten)"
        )
    return written, reader.hasher.hexdigest()


def hash_file(path: Path, opener: Opener = open_source, chunk_size: int = CHUNK_SIZE) -> str:
    """xxh3-128 of a whole file (used for read-back and for the already-present check)."""
    hasher = xxhash.xxh3_128()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    raw = opener(path)
    try:
        while True:
            n = raw.readinto(view) or 0
            if n == 0:
                break
            hasher.update(view[:n])
    finally:
        raw.close()
    return hasher.hexdigest()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    # On Linux, DONTNEED on dirty pages starts their writeback without waiting for it (the
    # effect of sync_file_range, which os does not expose): the disk writes while we copy, so
    # the final fsync has little left to do, as with `cp` followed by one `sync`.
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync on Windows; NTFS journals the rename
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _already_present(src: Path, final: Path, expected: int, opener: Opener) -> str | None:
    """The hash if ``final`` already holds exactly the source's bytes, else None."""
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != expected:
        return None
    # The request carries no hash, so both sides are hashed (reading, never writing, the card).
    results: dict[str, str] = {}

    def dest_hash() -> None:
        results["dest"] = hash_file(final)

    t = threading.Thread(target=dest_hash, name="skyreel-hash-dest", daemon=True)
    t.start()
    src_hash = hash_file(src, opener)
    t.join()
    return src_hash if results.get("dest") == src_hash else None


def copy_file(
    src: Path,
    share_root: Path,
    destination_rel: str,
    expected_size: int,
    *,
    verify_readback: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    opener: Opener = open_source,
    writer: Writer = open_partial,
    chunk_size: int = CHUNK_SIZE,
    station: str = "",
) -> CopyOutcome:
    """Copy ``src`` to ``share_root/destination_rel``, verified; see the module docstring.

    ``station`` (the detector id) names the temp file, so stations never touch each other's.
    """
    try:
        final = confine(share_root, destination_rel)
    except PathRefused as exc:
        raise CopyRefused(f"destination refused: {exc.reason}") from None
    try:
        st = os.stat(src)
    except OSError as exc:
        raise _describe_os_error(exc, f"opening {src.name}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CopyRefused(f"source {src.name} is not a regular file")
    if st.st_size != expected_size:
        raise CopyRefused(
            f"source size is {st.st_size}, the request expected {expected_size} (the card changed)"
        )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        final = confine(share_root, destination_rel)  # re-check now that the directories exist
        present = _already_present(src, final, expected_size, opener)
    except PathRefused as exc:
        raise CopyRefused(f"destination refused: {exc.reason}") from None
    except OSError as exc:
        raise _describe_os_error(exc, "checking the destination", side="destination") from None
    if present is not None:
        logger.info("already present, not copied again: %s", destination_rel)
        return CopyOutcome(destination_rel, expected_size, present, skipped=True)

    tmp = partial_path(final, station)
    # A stale partial of ours (a copy killed earlier) does not count against the space needed.
    check_space(final.parent, expected_size - _size_or_zero(tmp))
    done = False
    try:
        digest = _copy_to_partial(
            src, tmp, expected_size, verify_readback, progress, cancel, opener, writer, chunk_size
        )
        _rename_into_place(tmp, final)
        try:
            size = os.stat(final).st_size
        except OSError as exc:
            raise _describe_os_error(exc, "after the rename", side="destination") from exc
        if size != expected_size:
            os.unlink(final)
            raise CopyFailed(
                f"destination size {size} != {expected_size} after rename", kind="destination"
            )
        done = True
    finally:
        if not done:
            _remove_quietly(tmp)
    logger.info("copied %s (%d bytes, %s %s)", destination_rel, expected_size, HASH_ALGO, digest)
    return CopyOutcome(destination_rel, expected_size, digest)


def _size_or_zero(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _rename_into_place(tmp: Path, final: Path) -> None:
    """The atomic rename; its failure is the share's, reported with its cause."""
    try:
        os.replace(tmp, final)
    except FileNotFoundError as exc:
        gone = not os.path.lexists(tmp)
        cause = "the temp file was gone (removed by another process?)" if gone else exc.strerror
        raise CopyFailed(
            f"destination error (ENOENT) renaming {tmp.name} into place: {cause}",
            kind="destination",
        ) from exc
    except OSError as exc:
        raise _describe_os_error(exc, "renaming into place", side="destination") from exc
    try:
        _fsync_dir(final.parent)
    except OSError as exc:
        raise _describe_os_error(exc, "syncing the directory", side="destination") from exc


def _copy_to_partial(
    src: Path,
    tmp: Path,
    expected: int,
    verify_readback: bool,
    progress: Progress | None,
    cancel: threading.Event | None,
    opener: Opener,
    writer: Writer,
    chunk_size: int,
) -> str:
    try:
        source = opener(src)
    except OSError as exc:
        raise _describe_os_error(exc, f"opening {src.name}") from None
    try:
        try:
            sink = writer(tmp)
        except OSError as exc:
            raise _describe_os_error(exc, "creating the temp file", side="destination") from None
        verifier = ReadbackVerifier(tmp, sink.fileno(), chunk_size) if verify_readback else None
        try:
            if verifier is not None:
                verifier.start()
            _, digest = _pipe(source, sink, expected, chunk_size, progress, cancel, verifier)
            try:
                os.fsync(sink.fileno())
            except OSError as exc:
                raise _describe_os_error(exc, "flushing the share", side="destination") from exc
            if verifier is not None:
                verifier.finish()
                verifier.join()
                _check_readback(verifier, digest, expected)
        finally:
            if verifier is not None and verifier.is_alive():
                verifier.abort()
                verifier.join()
            sink.close()
    finally:
        source.close()
    return digest


def _check_readback(verifier: ReadbackVerifier, digest: str, expected: int) -> None:
    if verifier.error is not None:
        raise _describe_os_error(verifier.error, "reading back the copy", side="destination")
    if verifier.verified != expected:
        raise CopyFailed(f"read back {verifier.verified} bytes of {expected}", kind="destination")
    if verifier.hexdigest() != digest:
        raise CopyFailed(
            f"read-back hash {verifier.hexdigest()} != {digest}: the share returned other bytes",
            kind="destination",
        )


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("could not remove partial file %s", path, exc_info=True)
