"""Copy throughput: the detector's verified copy against ``cp`` and against the physical limit.

Run: ``python -m benchmarks.copy_throughput [--files 8] [--mib 256] [--rounds 3]``

Creates (once, cached in ``.cache/copy_bench/src``) a set of files with random-ish content, then,
round by round with the sides interleaved (``benchmarks/_compare.py``: detector then cp, cp then
detector, ...; the page cache dropped before every run), copies the whole set into a fresh
directory on the same filesystem:

* ``detector``: :func:`detector.copy.copy_file` as the detector runs it (progress callback,
  cancel event, station tag; xxh3-128 while reading, temp name, fsync, read-back verification
  from storage, atomic rename, directory fsync);
* ``cp``: ``cp`` followed by ``sync`` of the copies and their directory (coreutils fsyncs each:
  the whole machine's dirty pages are not this side's cost), so both pay for getting the bytes
  to the disk; then, the cache dropped again, the copy is read once more (what the detector's
  read-back costs at least): the *limit* is ``cp + sync + one read``.

Per round: ``ratio`` = detector MB/s / cp MB/s, ``limit_ratio`` = detector MB/s / limit MB/s.
The last two lines are::

    page cache: method=<drop_caches|fadvise|none> resident_after_drop_max=<p>% files=<k> file_bytes=<n>
    copy_throughput: bytes=<n> rounds=<k> detector_MBps=<x> cp_MBps=<y> ratio=<median> ratio_min=<a> ratio_max=<b> limit_ratio=<median>

(MB/s figures are medians over the rounds; the ratios are medians of the per-round ratios).
Goal (issue 18): limit_ratio >= 0.85 and ratio >= 0.6.
"""  # noqa: E501

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from benchmarks._compare import (
    CacheMethod,
    Round,
    check_rounds,
    drop_cache,
    figure_spread,
    interleave,
    ratio_spread,
    resident_fraction,
    weakest,
)
from benchmarks._services import CACHE as CACHE_ROOT
from detector.copy import CHUNK_SIZE, copy_file

CACHE = CACHE_ROOT / "copy_bench"
READ_CHUNK = 8 * 1024 * 1024


def make_sources(directory: Path, files: int, size: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(4 * 1024 * 1024)
    paths = []
    for i in range(files):
        path = directory / f"GX{i + 1:02d}0001.MP4"
        if not path.exists() or path.stat().st_size != size:
            with open(path, "wb") as fh:
                written = 0
                counter = 0
                while written < size:
                    # Vary each block so no filesystem can deduplicate or compress it away.
                    chunk = counter.to_bytes(8, "little") + block[8:]
                    chunk = chunk[: size - written]
                    fh.write(chunk)
                    written += len(chunk)
                    counter += 1
        paths.append(path)
    for stale in directory.iterdir():
        if stale not in paths:
            stale.unlink()
    return paths


def run_detector(sources: list[Path], share: Path) -> float:
    """The detector's copy of every source, as ``detector/requests.py`` calls it."""
    cancel = threading.Event()
    last = [0.0]

    def progress(done: int, total: int) -> None:  # throttled, as the detector's callback is
        now = time.monotonic()
        if now - last[0] >= 0.5 or done == total:
            last[0] = now

    start = time.perf_counter()
    for src in sources:
        out = copy_file(
            src,
            share,
            f"bench/{src.name}",
            src.stat().st_size,
            verify_readback=True,
            progress=progress,
            cancel=cancel,
            station="bench",
        )
        if out.skipped:
            raise RuntimeError(f"{src.name} was already present: the benchmark copied nothing")
    return time.perf_counter() - start


def run_cp(sources: list[Path], dest: Path) -> float:
    """``cp``, then ``sync`` of the copies and their directory (fsync of each, as the detector
    does; a bare ``sync`` would also flush whatever else the shared machine has dirty)."""
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["cp", *map(str, sources), str(dest)], check=True)
    subprocess.run(["sync", *(str(dest / s.name) for s in sources), str(dest)], check=True)
    return time.perf_counter() - start


def read_once(directory: Path) -> float:
    """Seconds to read every file under ``directory`` once (8 MiB reads, no hashing)."""
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    start = time.perf_counter()
    for path in sorted(directory.iterdir()):
        fd = os.open(path, os.O_RDONLY)
        try:
            while os.readv(fd, [view]):
                pass
        finally:
            os.close(fd)
    return time.perf_counter() - start


class Bench:
    def __init__(self, sources: list[Path], out: Path) -> None:
        self.sources = sources
        self.out = out
        self.methods: list[CacheMethod] = []
        self.resident: list[float] = []

    def cold(self) -> None:
        """Drop the cache and check that the sources really left it."""
        self.methods.append(drop_cache([self.sources[0].parent, self.out]))
        frac = resident_fraction(self.sources)
        if frac is not None:
            self.resident.append(frac)

    def detector(self) -> dict[str, float]:
        share = self.out / "detector"
        share.mkdir()
        try:
            return {"detector_s": run_detector(self.sources, share)}
        finally:
            shutil.rmtree(share, ignore_errors=True)

    def cp(self) -> dict[str, float]:
        dest = self.out / "cp"
        try:
            cp_s = run_cp(self.sources, dest)
            self.methods.append(drop_cache([dest]))
            read_s = read_once(dest)
            return {"cp_s": cp_s, "read_s": read_s, "limit_s": cp_s + read_s}
        finally:
            shutil.rmtree(dest, ignore_errors=True)


def mbps(total: int, seconds: float) -> float:
    return total / seconds / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--mib", type=int, default=256, help="size of each file in MiB")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    args = p.parse_args(argv)
    if args.files < 1 or args.mib < 1:
        p.error("--files and --mib must be at least 1")
    try:
        check_rounds(args.rounds)
    except ValueError as exc:
        p.error(str(exc))
    size = args.mib * 1024 * 1024
    sources = make_sources(CACHE / "src", args.files, size)
    total = size * args.files
    out = CACHE / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bench = Bench(sources, out)
    print(f"{args.files} files of {args.mib} MiB, chunk {CHUNK_SIZE >> 20} MiB", flush=True)

    def report(r: Round) -> None:
        f = r.figures
        limit_s = f["limit_s"]
        print(
            f"round {r.index} ({' then '.join(r.order)}): "
            f"detector_MBps={mbps(total, f['detector_s']):.1f} "
            f"cp_MBps={mbps(total, f['cp_s']):.1f} read_MBps={mbps(total, f['read_s']):.1f} "
            f"limit_MBps={mbps(total, limit_s):.1f} ratio={f['cp_s'] / f['detector_s']:.3f} "
            f"limit_ratio={limit_s / f['detector_s']:.3f}",
            flush=True,
        )

    rounds = interleave(
        {"detector": bench.detector, "cp": bench.cp},
        args.rounds,
        before=lambda _name: bench.cold(),
        report=report,
    )
    shutil.rmtree(out, ignore_errors=True)
    # MB/s ratios: detector / cp = cp seconds / detector seconds.
    ratio = ratio_spread(rounds, "cp_s", "detector_s")
    limit = ratio_spread(rounds, "limit_s", "detector_s")
    det = figure_spread(rounds, "detector_s")
    cp = figure_spread(rounds, "cp_s")
    method = weakest(bench.methods)
    resident = f"{max(bench.resident) * 100:.1f}%" if bench.resident else "unknown"
    print(f"limit_ratio spread: min={limit.low:.3f} max={limit.high:.3f}")
    print(
        f"page cache: method={method} resident_after_drop_max={resident} "
        f"files={args.files} file_bytes={size}"
    )
    print(
        f"copy_throughput: bytes={total} rounds={len(rounds)} "
        f"detector_MBps={mbps(total, det.median):.1f} cp_MBps={mbps(total, cp.median):.1f} "
        f"ratio={ratio.median:.3f} ratio_min={ratio.low:.3f} ratio_max={ratio.high:.3f} "
        f"limit_ratio={limit.median:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
