"""Where a step's ready-to-start goes: the worker's trace (agents/pipeline/trace.py) joined with
the database's ``ready_at`` / ``started_at``, as a p50/p95/max per part."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

#: (label, from, to): consecutive parts of ready -> start; "ready"/"started" are the DB's.
PARTS = (
    ("orchestrator txn to commit", "ready", "o.commit"),
    ("produce (send call)", "o.commit", "o.sent"),
    ("broker + fetch to Faust", "o.sent", "r.in"),
    ("Faust stream + batching", "r.in", "r.batch"),
    ("runner until claim begins", "r.batch", "r.claim"),
    ("claim txn to its UPDATE", "r.claim", "started"),
)
#: Steps the worker's own runner took (the local hand-off: no produce, broker or stream; their
#: claim is the last part above).
EXTRA = (
    ("(broker ack after send)", "o.sent", "o.acked"),
    ("(hand-off: commit to claim)", "o.commit", "h.take"),
)


def load(path: Path, execution_id: int) -> dict[str, dict[str, float]]:
    """step -> phase -> first wall time that phase was marked for it."""
    at: dict[str, dict[str, float]] = {}
    if not path.exists():
        return at
    for raw in path.read_text(encoding="utf-8").splitlines():
        mark = json.loads(raw)
        if mark["e"] != execution_id:
            continue
        for step in mark["s"]:
            phases = at.setdefault(step, {})
            phases[mark["p"]] = min(phases.get(mark["p"], mark["t"]), mark["t"])
    return at


def breakdown(path: Path, execution_id: int, db: Mapping[str, tuple[float, float]]) -> list[str]:
    at = load(path, execution_id)
    for step, (ready, started) in db.items():
        at.setdefault(step, {}).update(ready=ready, started=started)
    out = [f"where ready-to-start goes ({len(db)} steps; ms per step):"]
    for label, a, b in (*PARTS, *EXTRA):
        ms = sorted((p[b] - p[a]) * 1000 for p in at.values() if a in p and b in p)
        if not ms:
            out.append(f"  {label:30s} no marks")
            continue
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        out.append(
            f"  {label:30s} p50 {statistics.median(ms):7.1f}  p95 {p95:7.1f}  "
            f"max {ms[-1]:7.1f}  (n={len(ms)})"
        )
    return out
