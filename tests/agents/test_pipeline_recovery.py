"""Crash recovery: PostgreSQL is the truth. A worker SIGKILLed mid-execution, or a broker that
comes back EMPTY, and reconciliation still completes the execution; no step succeeds twice."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from pipeline_harness import attempts, emitter, start, wait_status
from support import Rig, wait_for

from agents.pipeline.orchestrator import StepDef
from streams.stack.services import free_port, start_tansu

pytestmark = pytest.mark.slow


def layered(width: int, depth: int, seconds: float) -> list[StepDef]:
    """`depth` layers of `width` slow steps, each layer waiting for all of the previous one."""
    out = []
    for layer in range(depth):
        deps = (f"L{layer - 1}:*",) if layer else ()
        out += [
            StepDef(f"L{layer}:{i}", "slow", depends_on=deps, input={"seconds": seconds})
            for i in range(width)
        ]
    return out


async def count(pg: asyncpg.Connection, eid: int, status: str) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM pipeline_step WHERE execution_id = $1 AND status = $2",
            eid,
            status,
        )
    )


async def assert_succeeded_once(pg: asyncpg.Connection, eid: int, n_steps: int) -> None:
    tries = await attempts(pg, eid)
    succeeded: dict[str, int] = {}
    for r in tries:
        succeeded[r["name"]] = succeeded.get(r["name"], 0) + (r["status"] == "succeeded")
    assert len(succeeded) == n_steps
    assert set(succeeded.values()) == {1}, succeeded


async def test_sigkill_of_the_worker_mid_execution(rig: Rig, pg: asyncpg.Connection) -> None:
    worker = rig.worker(reconcile_s=1)
    plan = layered(width=4, depth=3, seconds=0.7)
    async with emitter(rig.settings, rig.names) as em:
        eid = await start(rig.db, em, "sigkill", plan)

        async def midway() -> bool:
            # a step that started under 0.3 s ago has 0.4 s of its 0.7 s left: its result cannot
            # be on its way yet, so the kill really loses an attempt
            fresh = await pg.fetchval(
                "SELECT count(*) FROM pipeline_step WHERE execution_id = $1 AND status = 'running' "
                "AND started_at > clock_timestamp() - interval '0.3 seconds'",
                eid,
            )
            return await count(pg, eid, "succeeded") >= 2 and fresh >= 1

        await wait_for(midway, timeout=60, interval=0.02, what="some steps done, one just started")
        worker.kill()
        running = await count(pg, eid, "running")
        assert running >= 1
        restarted = rig.worker(reconcile_s=1, name="worker-restarted")
        await wait_status(pg, eid, "succeeded", restarted, timeout=90)
    await assert_succeeded_once(pg, eid, len(plan))
    lost = await pg.fetchval("SELECT count(*) FROM pipeline_step_attempt WHERE status = 'lost'")
    assert lost >= 1  # the killed worker's attempts were requeued, not double-counted


async def test_broker_restarted_empty_reconciliation_completes(
    rig: Rig, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    broker = start_tansu(tmp_path / "broker1", port)
    own = rig.settings.model_copy(update={"kafka_url": broker.address})
    worker = rig.worker(settings=own, reconcile_s=1)
    plan = layered(width=3, depth=3, seconds=0.5)
    try:
        async with emitter(own, rig.names) as em:
            eid = await start(rig.db, em, "broker-lost", plan)
            await wait_for(lambda: count(pg, eid, "succeeded"), timeout=60, what="a step succeeded")
        broker.kill()  # every topic, message and committed offset is gone
        broker = start_tansu(tmp_path / "broker2", port)
        await wait_status(pg, eid, "succeeded", worker, timeout=120)
    finally:
        broker.stop()
    await assert_succeeded_once(pg, eid, len(plan))
