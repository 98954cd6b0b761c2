"""Issue 18 (pipeline latency): the claim fast path keeps the claim's semantics (exactly one
attempt recorded, duplicates/stale/early/pending requests not claimed, the pure core still
judging what the fast path leaves), the readiness query's split NOT EXISTS, custom plans on
every connection, and the benchmark-only trace (off by default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.pipeline.orchestrator import Orchestrator, StepDef, policy_for, start_execution
from agents.pipeline.runner import Runner
from storage import pipeline as repo
from storage import pipeline_claims as claims
from streams import records

ROOT = Path(__file__).resolve().parents[2]


class Sent:
    """What the engine sent (requests decoded and expanded), in order."""

    def __init__(self) -> None:
        self.requests: list[records.StepRequest] = []
        self.emitter = Emitter(self.send)

    async def send(self, key: bytes, value: bytes) -> object:
        self.requests += records.decode(records.StepRequest, value).expand()
        return None

    def take(self) -> list[records.StepRequest]:
        out, self.requests = self.requests, []
        return out


async def fan_out(engine: AsyncEngine, sent: Sent, key: str, n: int) -> int:
    steps = [
        StepDef("root", "noop"),
        *(StepDef(f"n:{i:04d}", "noop", depends_on=("root",)) for i in range(n)),
        StepDef("join", "noop", depends_on=("n:*",)),
    ]
    return await start_execution(
        engine,
        sent.emitter,
        default_handlers().registry,
        key=key,
        pipeline="latency",
        subject_type="test",
        subject_id=key,
        steps=steps,
    )


async def rows(engine: AsyncEngine, eid: int, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql), {"e": eid})]


async def results_sent(engine: AsyncEngine) -> tuple[Runner, list[records.StepResult]]:
    out: list[records.StepResult] = []

    async def send_result(key: bytes, value: bytes) -> object:
        out.append(records.decode(records.StepResult, value))
        return None

    return Runner(engine, default_handlers(), send_result, worker="w-latency"), out


async def test_a_claim_records_one_attempt_and_a_redelivery_claims_nothing(
    clean_db: AsyncEngine,
) -> None:
    sent = Sent()
    eid = await fan_out(clean_db, sent, "claim-once", 3)
    runner, _ = await results_sent(clean_db)
    (root,) = sent.take()
    won = await runner.claim([root])
    assert [c.request.step for c in won] == ["root"]
    # the same request again (at-least-once delivery), twice in one batch too: nothing claimed
    assert await runner.claim([root]) == []
    assert await runner.claim([root, root]) == []
    assert await rows(
        clean_db,
        eid,
        "SELECT s.status, s.worker, s.started_at IS NOT NULL, a.attempt, a.status, a.worker "
        "FROM pipeline_step s JOIN pipeline_step_attempt a ON a.step_id = s.id "
        "WHERE s.execution_id = :e AND s.name = 'root'",
    ) == [("running", "w-latency", True, 1, "running", "w-latency")]


async def test_what_the_fast_path_leaves_the_pure_core_judges(clean_db: AsyncEngine) -> None:
    sent = Sent()
    eid = await fan_out(clean_db, sent, "claim-judged", 2)
    runner, _ = await results_sent(clean_db)
    (root,) = sent.take()
    pending = records.StepRequest(execution_id=eid, step="n:0000", kind="noop", attempt=1)
    future = records.StepRequest(execution_id=eid, step="root", kind="noop", attempt=2)
    stale = records.StepRequest(execution_id=eid, step="root", kind="noop", attempt=0)
    # PENDING (not ready), an attempt never dispatched, an older attempt: none is claimed
    assert await runner.claim([pending, future, stale]) == []
    # a READY step whose not_before is still ahead (a re-send during backoff) waits
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE pipeline_step SET not_before = now() + interval '1 hour' "
                "WHERE execution_id = :e AND name = 'root'"
            ),
            {"e": eid},
        )
    assert await runner.claim([root]) == []
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE pipeline_step SET not_before = now() - interval '1 second' "
                "WHERE execution_id = :e AND name = 'root'"
            ),
            {"e": eid},
        )
    assert [c.request.step for c in await runner.claim([root])] == ["root"]
    assert await rows(
        clean_db,
        eid,
        "SELECT name, status FROM pipeline_step WHERE execution_id = :e ORDER BY name",
    ) == [("join", "pending"), ("n:0000", "pending"), ("n:0001", "pending"), ("root", "running")]


async def test_a_fan_out_runs_once_each_through_claims_and_the_readiness_query(
    clean_db: AsyncEngine,
) -> None:
    """A batched request's steps are each claimed and recorded exactly once (the batch sent
    twice over), and the join becomes ready only when every n:* step succeeded."""
    sent = Sent()
    eid = await fan_out(clean_db, sent, "fan-once", 300)
    runner, results = await results_sent(clean_db)
    orchestrator = Orchestrator(clean_db, default_handlers().registry, sent.emitter)
    for _ in range(3):  # root, the 300, the join
        requests = sent.take()
        await runner.run(requests)
        await runner.run(requests)  # redelivered: claims nothing, runs nothing
        done, results[:] = list(results), []
        assert len(done) == len(requests)
        await orchestrator.record(done)
        await orchestrator.record(done)  # a duplicate result is ignored
    assert sent.take() == []
    assert await rows(
        clean_db,
        eid,
        "SELECT count(*), count(DISTINCT a.step_id), min(s.status), max(s.status) "
        "FROM pipeline_step s JOIN pipeline_step_attempt a ON a.step_id = s.id "
        "WHERE s.execution_id = :e",
    ) == [(302, 302, "succeeded", "succeeded")]
    assert await rows(clean_db, eid, "SELECT status FROM pipeline_execution WHERE id = :e") == [
        ("succeeded",)
    ]


async def test_the_join_is_not_ready_while_one_of_its_pattern_is_not_done(
    clean_db: AsyncEngine,
) -> None:
    sent = Sent()
    await fan_out(clean_db, sent, "join-waits", 3)
    runner, results = await results_sent(clean_db)
    orchestrator = Orchestrator(clean_db, default_handlers().registry, sent.emitter)
    await runner.run(sent.take())
    await orchestrator.record(results)
    results.clear()
    middle = sent.take()
    assert sorted(r.step for r in middle) == ["n:0000", "n:0001", "n:0002"]
    await runner.run(middle[:2])
    await orchestrator.record(results)
    assert sent.take() == []  # n:0002 is still ready: the join waits
    results.clear()
    await runner.run(middle[2:])
    await orchestrator.record(results)
    assert [r.step for r in sent.take()] == ["join"]


async def hot_updates(conn: AsyncConnection) -> tuple[int, int]:
    """(rows updated, of them heap-only) in pipeline_step by this connection, as far as not yet
    in the shared statistics (so: compare two readings in one transaction)."""
    row = (
        await conn.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'pipeline_step'"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_a_fan_outs_promotion_and_claim_are_heap_only_updates(
    clean_db: AsyncEngine,
) -> None:
    """Migration 0012: no index covers a column a step's life changes and pages keep room, so
    the 200-row promotion and the 200-row claim write (nearly) no index entries: heap-only
    updates (HOT; a new version a little longer than its page's room is not). With an index on
    status, or fillfactor 100, none or few are."""
    sent = Sent()
    eid = await fan_out(clean_db, sent, "heap-only", 200)
    runner, _ = await results_sent(clean_db)
    await runner.run(sent.take())  # the root
    async with clean_db.begin() as conn:
        done = await ops.load_states(conn, eid, ["root"])
        root = done["root"]
        succeeded = dag.apply_result(
            root, 1, dag.Success(), policy_for(default_handlers().registry, "noop")
        )
        await repo.save_changes(conn, eid, [repo.Change(root, succeeded)])
        before = await hot_updates(conn)
        promoted = await repo.save_promotions(
            conn, eid, await ops.promotions(conn, eid, ["root"], (), ())
        )
        after = await hot_updates(conn)
    assert len(promoted) == 200
    assert after[0] - before[0] == 200 and after[1] - before[1] >= 160
    async with clean_db.begin() as conn:
        before = await hot_updates(conn)
        won = await claims.claim_ready(conn, eid, [(s.name, 1) for s in promoted], "w-hot")
        after = await hot_updates(conn)
    assert len(won) == 200
    assert after[0] - before[0] == 200 and after[1] - before[1] >= 160


async def test_connections_plan_every_statement_afresh(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar() == "force_custom_plan"


def test_the_trace_is_off_unless_asked_and_writes_marks_when_on(tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    code = (
        "from agents.pipeline import trace; print(trace.ON); "
        "trace.mark('o.sent', 7, ['a', 'b']); trace.mark('r.in', 7, ['a'], at=12.5)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SKYREEL_PIPELINE_TRACE"}
    off = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True)
    assert off.stdout.decode().strip() == "False" and not out.exists()
    env["SKYREEL_PIPELINE_TRACE"] = str(out)
    on = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True)
    assert on.stdout.decode().strip() == "True", on.stderr
    marks = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(m["p"], m["e"], m["s"]) for m in marks] == [
        ("o.sent", 7, ["a", "b"]),
        ("r.in", 7, ["a"]),
    ]
    assert marks[1]["t"] == 12.5
