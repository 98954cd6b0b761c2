"""Copy throughput: the detector's verified copy against ``cp``, in the same run.

Run: ``python -m benchmarks.copy_throughput [--files 8] [--mib 256]``

Creates (once, cached in ``.cache/copy_bench/src``) a set of files with random-ish content,
then copies the whole set twice into fresh destination directories on the same filesystem:
with :func:`detector.copy.copy_file` exactly as shipped (xxh3-128 while reading, temp name,
fsync, read-back verification, atomic rename, directory fsync), and with ``cp`` followed by
``sync`` so both pay for getting the bytes to the disk. The page cache is dropped before each
run when possible (root: ``/proc/sys/vm/drop_caches``); otherwise it says so, and the source is
read warm by both. The last line is::

    copy_throughput: bytes=<n> detector_MBps=<x> cp_MBps=<y> ratio=<x/y>
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from detector.copy import copy_file

CACHE = Path(".cache/copy_bench")


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
    return paths


def drop_caches() -> bool:
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def run_detector(sources: list[Path], share: Path) -> float:
    start = time.perf_counter()
    for src in sources:
        copy_file(src, share, f"bench/{src.name}", src.stat().st_size, verify_readback=True)
    return time.perf_counter() - start


def run_cp(sources: list[Path], dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["cp", *map(str, sources), str(dest)], check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--mib", type=int, default=256, help="size of each file in MiB")
    args = p.parse_args(argv)
    sources = make_sources(CACHE / "src", args.files, args.mib * 1024 * 1024)
    total = sum(s.stat().st_size for s in sources)
    out = CACHE / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    cold = drop_caches()
    print(f"page cache dropped between runs: {'yes' if cold else 'no (not root?) - warm reads'}")
    cp_s = run_cp(sources, out / "cp")
    print(f"cp + sync: {total / cp_s / 1e6:.0f} MB/s ({cp_s:.2f} s)")
    shutil.rmtree(out / "cp")

    drop_caches()
    det_s = run_detector(sources, out)
    print(f"detector (xxh3_128, fsync, read-back): {total / det_s / 1e6:.0f} MB/s ({det_s:.2f} s)")
    shutil.rmtree(out, ignore_errors=True)

    det_mbps = total / det_s / 1e6
    cp_mbps = total / cp_s / 1e6
    print(
        f"copy_throughput: bytes={total} detector_MBps={det_mbps:.1f} "
        f"cp_MBps={cp_mbps:.1f} ratio={det_mbps / cp_mbps:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
