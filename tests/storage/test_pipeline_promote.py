"""Issue 18 (pipeline latency): the promotion fast path writes exactly what `save_changes`
writes for a plain promotion, leaves every other change to it, and stays guarded."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dag import StepState, StepStatus
from storage import pipeline as repo
from storage.pipeline_promote import is_plain_promotion, save_promotions

# every column a promotion may touch, compared between the two paths (times as "set or not")
COLUMNS = (
    "name, kind, status, attempt, error, waiting_for, worker, output, input, "
    "ready_at IS NOT NULL, not_before IS NOT NULL, started_at IS NOT NULL, "
    "finished_at IS NOT NULL"
)


def steps() -> list[StepState]:
    fan = [StepState(f"n:{i}", "noop", frozenset({"root"})) for i in range(5)]
    return [StepState("root", "noop"), *fan, StepState("join", "noop", frozenset({"n:*"}))]


async def execution(conn: AsyncConnection, key: str) -> int:
    eid, _ = await repo.create_execution(
        conn, key=key, pipeline="test", subject_type="test", subject_id=key
    )
    inputs = {s.name: ({"clip": s.name} if s.name == "n:3" else {}) for s in steps()}
    await repo.add_steps(conn, eid, steps(), inputs)
    await conn.execute(
        text("UPDATE pipeline_step SET status = 'succeeded', attempt = 1 WHERE execution_id = :e "
             "AND name = 'root'"),
        {"e": eid},
    )  # fmt: skip
    return eid


async def promotions(conn: AsyncConnection, eid: int) -> list[repo.Change]:
    changes = await ops.promotions(conn, eid, ["root"])
    assert sorted(c.new.name for c in changes) == [f"n:{i}" for i in range(5)]
    return changes


async def table(conn: AsyncConnection, eid: int) -> list[tuple[object, ...]]:
    rows = await conn.execute(
        text(f"SELECT {COLUMNS} FROM pipeline_step WHERE execution_id = :e ORDER BY name"),
        {"e": eid},
    )
    return [tuple(r) for r in rows]


async def test_the_fast_path_writes_what_save_changes_writes(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        general, fast = await execution(conn, "general"), await execution(conn, "fast")
        by_general = await repo.save_changes(conn, general, await promotions(conn, general))
        changes = await promotions(conn, fast)
        assert all(is_plain_promotion(c) for c in changes)
        by_fast = await save_promotions(conn, fast, changes)
        assert await table(conn, fast) == await table(conn, general)
        logs = await conn.scalar(text("SELECT count(*) FROM pipeline_step_log"))
    assert logs == 0  # neither path logs a plain promotion

    def request(s: repo.Saved) -> tuple[object, ...]:
        return (s.name, s.kind, s.status, s.attempt, s.input, s.not_before)

    # what the dispatch needs (requests are built from these) is the same too
    assert sorted(map(request, by_fast)) == sorted(map(request, by_general))
    assert {s.name: s.input for s in by_fast}["n:3"] == {"clip": "n:3"}
    assert all(s.status is StepStatus.READY and s.attempt == 1 for s in by_fast)


async def test_a_change_it_does_not_cover_goes_the_general_way(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        eid = await execution(conn, "mixed")
        changes = await promotions(conn, eid)
        # a step retried by hand is made ready with a log line: not a plain promotion
        logged = repo.Change(changes[0].old, changes[0].new, log="ready again", actor="op")
        assert not is_plain_promotion(logged)
        saved = await save_promotions(conn, eid, [logged, *changes[1:]])
        assert sorted(s.name for s in saved) == [f"n:{i}" for i in range(5)]
        lines = await conn.execute(
            text("SELECT message, actor FROM pipeline_step_log"),
        )
        assert [tuple(r) for r in lines] == [("ready again", "op")]


async def test_a_step_no_longer_pending_makes_it_stale(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        eid = await execution(conn, "stale")
        changes = await promotions(conn, eid)
        await conn.execute(
            text("UPDATE pipeline_step SET status = 'cancelled' WHERE execution_id = :e "
                 "AND name = 'n:2'"),
            {"e": eid},
        )  # fmt: skip
        with pytest.raises(repo.StaleWrite):
            await save_promotions(conn, eid, changes)


def test_only_a_first_attempt_with_nothing_else_to_write_is_plain() -> None:
    pending = StepState("a", "noop")
    ready = dag.mark_ready(pending)
    assert is_plain_promotion(repo.Change(pending, ready))
    again = StepState("a", "noop", attempt=2, max_attempts=3)
    assert not is_plain_promotion(repo.Change(again, dag.mark_ready(again)))
    assert not is_plain_promotion(repo.Change(pending, ready, worker="w"))
    assert not is_plain_promotion(repo.Change(pending, ready, attempt_status="lost"))
