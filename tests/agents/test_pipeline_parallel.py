"""A diamond and a wide DAG through the real worker, broker and PostgreSQL: steps run in
parallel as soon as their dependencies are met, and never before."""

from __future__ import annotations

import asyncpg
import pytest
from pipeline_harness import attempts, emitter, start, steps, wait_status
from support import Rig

from agents.pipeline.orchestrator import StepDef

pytestmark = pytest.mark.slow

SLOW = {"seconds": 0.6}


def overlap(a: asyncpg.Record, b: asyncpg.Record) -> bool:
    return bool(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"])


async def test_diamond_and_wide_dags_run_in_parallel(rig: Rig, pg: asyncpg.Connection) -> None:
    worker = rig.worker()
    diamond = [
        StepDef("a", "slow", input=SLOW),
        StepDef("b", "slow", depends_on=("a",), input=SLOW),
        StepDef("c", "slow", depends_on=("a",), input=SLOW),
        StepDef("d", "noop", depends_on=("b", "c")),
    ]
    wide = [StepDef(f"w{i}", "slow", input=SLOW) for i in range(6)]
    wide.append(StepDef("join", "noop", depends_on=("w*",)))
    async with emitter(rig.settings, rig.names) as em:
        d_id = await start(rig.db, em, "diamond", diamond)
        w_id = await start(rig.db, em, "wide", wide)
        await wait_status(pg, d_id, "succeeded", worker)
        await wait_status(pg, w_id, "succeeded", worker)

    d = await steps(pg, d_id)
    assert overlap(d["b"], d["c"]), "b and c should run at the same time"
    assert d["b"]["started_at"] >= d["a"]["finished_at"]
    assert d["c"]["started_at"] >= d["a"]["finished_at"]
    assert d["d"]["started_at"] >= max(d["b"]["finished_at"], d["c"]["finished_at"])

    w = await steps(pg, w_id)
    ws = [w[f"w{i}"] for i in range(6)]
    assert sum(overlap(x, y) for x in ws for y in ws if x is not y) >= 2
    assert w["join"]["started_at"] >= max(x["finished_at"] for x in ws)
    # the two executions overlapped too
    assert overlap(d["a"], w["w0"]) or overlap(d["b"], w["w0"]) or overlap(d["a"], w["w1"])

    for eid in (d_id, w_id):
        rows = await attempts(pg, eid)
        assert all(r["attempt"] == 1 and r["status"] == "succeeded" for r in rows)
        assert len(rows) == len(await steps(pg, eid))
