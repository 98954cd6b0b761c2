"""Run every benchmark and print one table of their result lines.

Run: ``python -m benchmarks [--only a,b] [--skip a,b] [--timeout S]``.

Each benchmark is a module ``benchmarks/NAME.py`` (not starting with ``_``) run as its own
process, ``python -m benchmarks.NAME``, so one crashing or leaking benchmark cannot skew the next.
Their output streams through as it comes; every benchmark ends by printing one summary line
(``NAME: key=value ...``), and the table at the end collects those last lines with the exit code
and the wall-clock seconds of each run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Run in this order when present (cheap, isolated ones first; end_to_end last, it is the longest).
ORDER = (
    "ingest_diff",
    "copy_throughput",
    "qr_decode",
    "render_throughput",
    "auto_edit",
    "pipeline_overhead",
    "status_api",
    "hub_abuse",
    "end_to_end",
    "fault_recovery",
)
# Modules in benchmarks/ that are not benchmarks (qr_decode builds its corpus itself).
NOT_BENCHMARKS = frozenset({"qr_corpus"})


@dataclass(frozen=True)
class Outcome:
    name: str
    last_line: str
    exit_code: int
    seconds: float


def discover(directory: Path) -> list[str]:
    """Benchmark module names in ``directory``, in :data:`ORDER`, then the rest by name."""
    found = {
        p.stem
        for p in directory.glob("*.py")
        if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS
    }
    known = [n for n in ORDER if n in found]
    return known + sorted(found - set(known))


def select(names: Sequence[str], only: Sequence[str], skip: Sequence[str]) -> list[str]:
    """Apply ``--only``/``--skip``; an unknown name is an error (a typo must not run nothing)."""
    unknown = sorted((set(only) | set(skip)) - set(names))
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(names)}")
    return [n for n in names if (not only or n in only) and n not in skip]


def run_one(name: str, timeout: float | None) -> Outcome:
    """Run ``python -m benchmarks.NAME``, echo its stdout, keep its last non-empty line."""
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    last = ""
    with subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        # A timer, not a check per line: a benchmark hanging silently must be stopped too.
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill) if timeout is not None else None
        if watchdog is not None:
            watchdog.start()
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if line.strip():
                    last = line.strip()
            code = proc.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
    if fired.is_set():
        last = f"(killed after {timeout:.0f} s) {last}"
    return Outcome(name, last, code, time.perf_counter() - started)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("benchmark", "last line", "exit", "seconds")]
    rows += [(o.name, o.last_line or "-", str(o.exit_code), f"{o.seconds:.1f}") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = parser.parse_args(argv)
    try:
        names = select(discover(Path(__file__).parent), _names(args.only), _names(args.skip))
    except ValueError as exc:
        parser.error(str(exc))
    outcomes = [run_one(name, args.timeout) for name in names]
    print("\n" + table(outcomes))
    return 0 if all(o.exit_code == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
