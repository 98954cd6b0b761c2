"""Busy processes that load the machine's cores while a benchmark pass runs (issue 18).

:func:`busy_cores` starts one pure-Python busy loop per core, each pinned to its core
(``os.sched_setaffinity`` where the platform has it), and stops them when the ``with`` block
ends. A result that changes under it depended on the machine's load.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["busy_cores", "cores"]


def cores() -> list[int]:
    """The cores this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _busy(
    core: int, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event
) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    ready.set()
    x = 0
    while not stop.is_set():
        for i in range(200_000):
            x ^= i * i


@contextmanager
def busy_cores(n: int | None = None) -> Iterator[list[int]]:
    """Load ``n`` cores (default: every core) with one busy process each, pinned; yields the
    cores loaded. The processes are started (and running) before the block and stopped after."""
    chosen = cores()[: n or None]
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs: list[multiprocessing.process.BaseProcess] = []
    readies: list[multiprocessing.synchronize.Event] = []
    try:
        for core in chosen:
            ready = ctx.Event()
            proc = ctx.Process(target=_busy, args=(core, ready, stop), daemon=True)
            proc.start()
            procs.append(proc)
            readies.append(ready)
        for ready in readies:
            ready.wait(30)
        yield chosen
    finally:
        stop.set()
        for started in procs:
            started.join(5)
            if started.is_alive():
                started.terminate()
                started.join(5)
