"""Dynamic steps: a running step spawns 20 steps, a later step waits for all of them through a
pattern, and a redelivered spawn (result or request) adds nothing."""

from __future__ import annotations

import asyncpg
import pytest
from pipeline_harness import REGISTRY, attempts, emitter, start, steps, wait_status
from support import Rig

from agents.pipeline.handlers import default_handlers
from agents.pipeline.orchestrator import Orchestrator, StepDef
from agents.pipeline.runner import Runner
from streams import records

GEN = StepDef(
    "gen",
    "spawner",
    spawns=("child:*",),
    input={"count": 20, "prefix": "child:", "child_kind": "slow", "child_input": {"seconds": 0.05}},
)
AFTER = StepDef("after", "noop", depends_on=("child:*",))


@pytest.mark.slow
async def test_a_step_spawns_twenty_and_a_later_step_waits_for_all(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    worker = rig.worker()
    async with emitter(rig.settings, rig.names) as em:
        eid = await start(rig.db, em, "spawn20", [GEN, AFTER])
        await wait_status(pg, eid, "succeeded", worker)
    s = await steps(pg, eid)
    children = [r for n, r in s.items() if n.startswith("child:")]
    assert len(children) == 20 and len(s) == 22
    assert all(r["spawned_by"] == "gen" and r["status"] == "succeeded" for r in children)
    assert s["after"]["started_at"] >= max(r["finished_at"] for r in children)
    assert s["gen"]["output"] == '{"spawned": 20}'
    assert len(await attempts(pg, eid)) == 22


async def test_spawning_is_idempotent_under_redelivery(rig: Rig, pg: asyncpg.Connection) -> None:
    """Drive the real runner and orchestrator in-process, delivering every message twice."""
    handlers = default_handlers()
    results: list[bytes] = []

    async def keep_result(key: bytes, value: bytes) -> object:
        results.append(value)
        return None

    async with emitter(rig.settings, rig.names) as em:
        eid = await start(rig.db, em, "spawn-twice", [GEN, AFTER])
        runner = Runner(rig.db, handlers, keep_result, worker="test")
        orchestrator = Orchestrator(rig.db, REGISTRY, em)
        request = records.StepRequest(
            execution_id=eid, step="gen", kind="spawner", attempt=1, input=dict(GEN.input)
        )
        await runner.run([request, request])  # a duplicated request is claimed once
        await runner.run([request])
        assert len(results) == 1
        result = records.decode(records.StepResult, results[0])
        assert len(result.spawn or []) == 20
        await orchestrator.record([result, result])  # duplicated within one batch
        await orchestrator.record([result])  # and redelivered later
    assert await pg.fetchval("SELECT count(*) FROM pipeline_step WHERE execution_id=$1", eid) == 22
    s = await steps(pg, eid)
    assert s["gen"]["status"] == "succeeded" and s["gen"]["attempt"] == 1
    assert sum(r["status"] == "ready" for r in s.values()) == 20  # the children, once each
    assert s["after"]["status"] == "pending"
    tries = await attempts(pg, eid)
    assert [(r["name"], r["attempt"], r["status"]) for r in tries] == [("gen", 1, "succeeded")]
    assert await pg.fetchval("SELECT count(*) FROM dead_letter") == 0
