"""A benchmark-only latency trace of the ready -> start path (issue 18).

Off unless the process starts with ``SKYREEL_PIPELINE_TRACE=<file>``; then every mark appends
one JSON line ``{"p": phase, "t": wall clock seconds, "e": execution id, "s": [steps], ...}`` to
that file. Off, a mark is one module-level boolean test (callers write ``if trace.ON:``), so
production pays nothing. benchmarks/pipeline_overhead.py turns it on in its worker and joins the
marks with the database's ``ready_at``/``started_at`` to say where the time goes.

Phases (in path order): ``o.commit`` the orchestrator's transaction that made steps READY has
committed; ``o.sent`` their request message is handed to the producer; ``o.acked`` the broker
acknowledged it; ``r.in`` the consumer handed it to Faust (the message's ``time_in``);
``r.batch`` the runner's agent got it in a batch; ``r.claim`` the claim transaction began;
``r.claimed`` it committed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import IO

PATH = os.environ.get("SKYREEL_PIPELINE_TRACE", "")
ON = bool(PATH)
_out: IO[str] | None = None


def mark(phase: str, execution_id: int, steps: Iterable[str], at: float | None = None) -> None:
    """Record that ``steps`` of ``execution_id`` passed ``phase`` (now, or at wall time ``at``)."""
    global _out
    if not ON:
        return
    if _out is None:
        _out = open(PATH, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (kept open)
    line = {"p": phase, "t": time.time() if at is None else at, "e": execution_id, "s": list(steps)}
    _out.write(json.dumps(line) + "\n")


def wall_of_monotonic(monotonic: float) -> float:
    """A ``time.monotonic()`` reading (Faust's ``message.time_in``) as wall-clock seconds."""
    return time.time() - (time.monotonic() - monotonic)
