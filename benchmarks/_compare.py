"""Comparative benchmarks, honestly: sides interleaved, medians with their spread, cold caches.

A benchmark that compares two (or more) sides must not run one side after the other: on a
shared machine the load drifts, and whatever runs first fills the page cache for the next. So
:func:`interleave` runs the sides round by round (A B, then B A, then A B ...: which one goes
first alternates), calls a ``before`` hook ahead of every run (usually :func:`drop_cache`), and
returns every round's figures. :func:`ratio_spread` turns them into the per-round ratio's median,
minimum and maximum, the figure a benchmark reports (``ratio=<median> ratio_min= ratio_max=``).

:func:`drop_cache` says how the page cache was dropped: ``drop_caches`` (root:
``/proc/sys/vm/drop_caches``, the whole cache), ``fadvise`` (``POSIX_FADV_DONTNEED`` on the
benchmark's own files, after an ``fdatasync``) or ``none`` (warm reads: the output must say so).
:func:`resident_fraction` checks it with ``mincore``: how much of the files is still cached.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import mmap
import os
import statistics
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_ROUNDS = 3
DROP_CACHES = Path("/proc/sys/vm/drop_caches")

Side = Callable[[], Mapping[str, float]]


class CacheMethod(enum.StrEnum):
    DROP_CACHES = "drop_caches"
    FADVISE = "fadvise"
    NONE = "none"


@dataclass(frozen=True)
class Round:
    """One round: the sides in the order they ran, and every figure they returned."""

    index: int
    order: tuple[str, ...]
    figures: Mapping[str, float]


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    def fields(self, name: str, digits: int = 3) -> str:
        """``name=<median> name_min=<low> name_max=<high>`` (pure)."""
        return (
            f"{name}={self.median:.{digits}f} {name}_min={self.low:.{digits}f} "
            f"{name}_max={self.high:.{digits}f}"
        )


def side_order(sides: Sequence[str], index: int) -> tuple[str, ...]:
    """The order of round ``index`` (0-based): as given in even rounds, reversed in odd ones,
    so each side goes first (and last) as often as the others (pure)."""
    if len(set(sides)) != len(sides) or len(sides) < 2:
        raise ValueError(f"need at least two distinct sides, got {list(sides)}")
    return tuple(sides) if index % 2 == 0 else tuple(reversed(sides))


def check_rounds(rounds: int, minimum: int = MIN_ROUNDS) -> int:
    if rounds < minimum:
        raise ValueError(f"{rounds} round(s): a comparison needs at least {minimum}")
    return rounds


def interleave(
    sides: Mapping[str, Side],
    rounds: int,
    *,
    before: Callable[[str], object] | None = None,
    report: Callable[[Round], object] | None = None,
    minimum: int = MIN_ROUNDS,
) -> list[Round]:
    """Run every side once per round, in :func:`side_order`; ``before(name)`` ahead of each run,
    ``report(round)`` after each round. A side returns its figures (names must not collide)."""
    check_rounds(rounds, minimum)
    names = list(sides)
    out: list[Round] = []
    for index in range(rounds):
        order = side_order(names, index)
        figures: dict[str, float] = {}
        for name in order:
            if before is not None:
                before(name)
            got = sides[name]()
            clash = set(got) & set(figures)
            if clash:
                raise ValueError(f"side {name} returned figures already set: {sorted(clash)}")
            figures.update(got)
        done = Round(index + 1, order, figures)
        out.append(done)
        if report is not None:
            report(done)
    return out


def spread(values: Iterable[float]) -> Spread:
    """Median, minimum and maximum (pure)."""
    vals = list(values)
    if not vals:
        raise ValueError("no values")
    return Spread(statistics.median(vals), min(vals), max(vals))


def figure_spread(rounds: Sequence[Round], name: str) -> Spread:
    return spread(r.figures[name] for r in rounds)


def ratios(rounds: Sequence[Round], numerator: str, denominator: str) -> list[float]:
    """The per-round ratio ``numerator / denominator`` (pure; each round against itself, never a
    median against a median)."""
    out = []
    for r in rounds:
        den = r.figures[denominator]
        if den == 0:
            raise ValueError(f"round {r.index}: {denominator} is 0")
        out.append(r.figures[numerator] / den)
    return out


def ratio_spread(rounds: Sequence[Round], numerator: str, denominator: str) -> Spread:
    return spread(ratios(rounds, numerator, denominator))


def weakest(methods: Iterable[CacheMethod]) -> CacheMethod:
    """The least thorough method used (pure): one warm run makes the whole comparison warm."""
    rank = [CacheMethod.DROP_CACHES, CacheMethod.FADVISE, CacheMethod.NONE]
    seen = list(methods)
    return max(seen, key=rank.index) if seen else CacheMethod.NONE


# --- the page cache (I/O) -------------------------------------------------------------------


def _fadvise_dontneed(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not f.is_symlink())
        elif p.is_file():
            out.append(p)
    return out


def drop_cache(paths: Iterable[Path] = (), *, allow_global: bool = True) -> CacheMethod:
    """Drop the page cache: the whole of it when allowed (root), else the pages of ``paths``
    (files, or directories walked) with ``POSIX_FADV_DONTNEED``; which method worked."""
    subprocess.run(["sync"], check=False)
    if allow_global:
        try:
            DROP_CACHES.write_text("3\n")
            return CacheMethod.DROP_CACHES
        except OSError:
            pass
    files = _files(paths)
    if files and hasattr(os, "posix_fadvise") and all(_fadvise_dontneed(f) for f in files):
        return CacheMethod.FADVISE
    return CacheMethod.NONE


_PROT_READ = 1
_MAP_SHARED = 1


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


def _resident(libc: ctypes.CDLL, path: Path) -> tuple[int, int]:
    """(resident pages, pages) of one file, by ``mincore`` on a mapping of it (mapping a file
    reads nothing: it does not change what is cached)."""
    size = path.stat().st_size
    if size == 0:
        return 0, 0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec), pages


def resident_fraction(paths: Iterable[Path]) -> float | None:
    """How much of ``paths`` (files or directories) is in the page cache, 0..1; None when it
    cannot be told (no ``mincore``)."""
    resident = total = 0
    try:
        libc = _libc()
        for f in _files(paths):
            r, n = _resident(libc, f)
            resident += r
            total += n
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return resident / total if total else 0.0
