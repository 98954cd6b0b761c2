"""The pipeline repository against real PostgreSQL: idempotent creation, guarded writes,
incremental promotion, operator retry/cancel with the actor in the step log."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dag import StepState, StepStatus
from agents.pipeline.errors import InvalidTransition
from storage import pipeline as repo


def st(name: str, *deps: str, spawns: tuple[str, ...] = (), max_attempts: int = 1) -> StepState:
    return StepState(name, "noop", frozenset(deps), frozenset(spawns), max_attempts=max_attempts)


async def execution_status(pg: asyncpg.Connection, eid: int) -> str:
    return str(await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid))


async def new_execution(engine: AsyncEngine, key: str, steps: list[StepState]) -> int:
    async with engine.begin() as conn:
        eid, _ = await repo.create_execution(
            conn, key=key, pipeline="test", subject_type="test", subject_id=key
        )
        await repo.add_steps(conn, eid, steps, {s.name: {"n": s.name} for s in steps})
        await ops.promote_all(conn, eid)
    return eid


async def run_step(engine: AsyncEngine, eid: int, name: str, ok: bool = True) -> list[str]:
    """Claim and finish one step like runner + orchestrator do; returns what became ready."""
    async with engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
        running = dag.start(state, state.attempt)
        saved = await repo.save_changes(conn, eid, [repo.Change(state, running, worker="w")])
        await repo.open_attempts(conn, [(saved[0].step_id, saved[0].attempt)], "w")
    async with engine.begin() as conn:
        await repo.lock_execution(conn, eid)
        outcome: dag.Outcome = dag.Success() if ok else dag.Failure("boom", retryable=False)
        new = dag.apply_result(running, running.attempt, outcome, dag_policy())
        await repo.save_changes(
            conn,
            eid,
            [repo.Change(running, new, attempt_status="succeeded" if ok else "failed", log="x")],
        )
        # as the orchestrator does: a finished step (even failed) may satisfy a settled dependency
        spawns = new.spawns if new.done else frozenset()
        ready = await ops.promote(conn, eid, [name] if new.terminal else [], spawns)
        await ops.refresh_execution_status(conn, eid)
    return sorted(s.name for s in ready)


def dag_policy() -> dag.BackoffPolicy:
    from agents.pipeline.registry import StepKind

    return StepKind("noop")


async def test_create_execution_is_idempotent_by_key(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        a, created_a = await repo.create_execution(
            conn, key="k1", pipeline="p", subject_type="card", subject_id="c"
        )
        b, created_b = await repo.create_execution(
            conn, key="k1", pipeline="p", subject_type="card", subject_id="c"
        )
    assert (a, created_a, created_b) == (b, True, False)


async def test_add_steps_inserts_each_name_once(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "k", [st("a"), st("b", "a")])
    async with clean_db.begin() as conn:
        again = await repo.add_steps(conn, eid, [st("a"), st("c", "a*")], {"c": {"x": [1, 2]}})
    assert again == ["c"]
    rows = await pg.fetch("SELECT name, depends_on, input FROM pipeline_step ORDER BY name")
    assert [(r["name"], r["depends_on"]) for r in rows] == [("a", []), ("b", ["a"]), ("c", ["a*"])]
    assert rows[2]["input"] == '{"x": [1, 2]}'


async def test_guarded_write_refuses_a_stale_snapshot(clean_db: AsyncEngine) -> None:
    eid = await new_execution(clean_db, "k", [st("a")])
    async with clean_db.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, ["a"]))[0])
    claim = repo.Change(state, dag.start(state, 1), worker="w1")
    async with clean_db.begin() as conn:
        assert len(await repo.save_changes(conn, eid, [claim])) == 1
    async with clean_db.begin() as conn:  # a second worker with the same snapshot loses
        assert await repo.save_changes(conn, eid, [claim], strict=False) == []
    with pytest.raises(repo.StaleWrite):
        async with clean_db.begin() as conn:
            await repo.save_changes(conn, eid, [claim])


async def test_fan_in_is_promoted_only_after_the_last_dependency(clean_db: AsyncEngine) -> None:
    eid = await new_execution(
        clean_db, "k", [st("root"), *(st(f"n:{i}", "root") for i in range(5)), st("join", "n:*")]
    )
    assert await run_step(clean_db, eid, "root") == [f"n:{i}" for i in range(5)]
    for i in range(4):
        assert await run_step(clean_db, eid, f"n:{i}") == []
    assert await run_step(clean_db, eid, "n:4") == ["join"]
    assert await run_step(clean_db, eid, "join") == []
    async with clean_db.connect() as conn:
        assert await repo.status_counts(conn, eid) == {"succeeded": 7}


async def test_fan_in_waits_for_a_spawner_with_nothing_matching_yet(clean_db: AsyncEngine) -> None:
    eid = await new_execution(
        clean_db, "k", [st("diff", spawns=("probe:*",)), st("render", "probe:*")]
    )
    # render has no probe:* match yet, but diff may still spawn one: it must wait for diff
    async with clean_db.connect() as conn:
        assert await repo.status_counts(conn, eid) == {"ready": 1, "pending": 1}
    assert await run_step(clean_db, eid, "diff") == ["render"]


async def test_retry_reruns_failed_steps_only_and_records_the_actor(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "k", [st("a"), st("b", "a"), st("c"), st("d", "b", "c")])
    await run_step(clean_db, eid, "a")
    await run_step(clean_db, eid, "c")
    await run_step(clean_db, eid, "b", ok=False)
    assert await execution_status(pg, eid) == "failed"
    async with clean_db.begin() as conn:
        with pytest.raises(InvalidTransition):
            await ops.retry_step(conn, eid, "a", "ops@dz")
    async with clean_db.begin() as conn:
        ready = await ops.retry_execution(conn, eid, "ops@dz")
    assert [(s.name, s.attempt) for s in ready] == [("b", 2)]
    assert await run_step(clean_db, eid, "b") == ["d"]
    await run_step(clean_db, eid, "d")
    rows = {r["name"]: r for r in await pg.fetch("SELECT name, status, attempt FROM pipeline_step")}
    assert {n: (r["status"], r["attempt"]) for n, r in rows.items()} == {
        "a": ("succeeded", 1),
        "b": ("succeeded", 2),
        "c": ("succeeded", 1),
        "d": ("succeeded", 1),
    }
    log = await pg.fetch(
        "SELECT l.attempt, l.actor, l.message FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE s.name = 'b' ORDER BY l.id"
    )
    assert (2, "ops@dz", "retry requested by ops@dz") in [tuple(r) for r in log]
    tries = await pg.fetch(
        "SELECT a.attempt, a.status FROM pipeline_step_attempt a JOIN pipeline_step s "
        "ON s.id = a.step_id WHERE s.name = 'b' ORDER BY a.attempt"
    )
    assert [tuple(r) for r in tries] == [(1, "failed"), (2, "succeeded")]
    counters = dict(await pg.fetch("SELECT name, value FROM counter"))
    assert counters["steps_failed"] == 1 and counters["steps_retried"] == 1
    assert (
        await pg.fetchval("SELECT status FROM pipeline_execution WHERE id=$1", eid) == "succeeded"
    )


async def test_cancel_execution_cancels_what_is_unfinished(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "k", [st("a"), st("b", "a"), st("c")])
    await run_step(clean_db, eid, "c")
    async with clean_db.begin() as conn:
        assert await ops.cancel_execution(conn, eid, "ops") == 2
    rows = dict(await pg.fetch("SELECT name, status FROM pipeline_step"))
    assert rows == {"a": StepStatus.CANCELLED, "b": StepStatus.CANCELLED, "c": "succeeded"}
    assert (
        await pg.fetchval("SELECT status FROM pipeline_execution WHERE id=$1", eid) == "cancelled"
    )


async def test_a_settled_dependency_is_promoted_after_a_failure_and_runs_again_on_retry(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    steps = [st("probe:1"), st("probe:2"), st("render", "?probe:*"), st("publish", "render")]
    eid = await new_execution(clean_db, "settled", steps)
    assert await run_step(clean_db, eid, "probe:1") == []
    assert await run_step(clean_db, eid, "probe:2", ok=False) == ["render"]
    assert await run_step(clean_db, eid, "render") == ["publish"]
    await run_step(clean_db, eid, "publish")
    assert await execution_status(pg, eid) == "failed"  # a clip is missing: a person looks

    async with clean_db.begin() as conn:
        ready = await ops.retry_step(conn, eid, "probe:2", "op")
    assert [s.name for s in ready] == ["probe:2"]
    states = dict(
        await pg.fetch("SELECT name, status FROM pipeline_step WHERE execution_id = $1", eid)
    )
    assert states == {
        "probe:1": "succeeded",
        "probe:2": "ready",
        "render": "pending",
        "publish": "pending",
    }
    assert await run_step(clean_db, eid, "probe:2") == ["render"]
    assert await run_step(clean_db, eid, "render") == ["publish"]
    await run_step(clean_db, eid, "publish")
    assert await execution_status(pg, eid) == "succeeded"
    logs = await pg.fetch(
        "SELECT s.name, l.message, l.actor FROM pipeline_step_log l JOIN pipeline_step s "
        "ON s.id = l.step_id WHERE l.actor = 'op' ORDER BY l.id"
    )
    assert [(r["name"], r["message"]) for r in logs] == [
        ("probe:2", "retry requested by op"),
        ("publish", "runs again after probe:2 (retry by op)"),
        ("render", "runs again after probe:2 (retry by op)"),
    ]


async def test_a_plain_dependency_is_not_promoted_after_a_failure(clean_db: AsyncEngine) -> None:
    eid = await new_execution(clean_db, "strict", [st("probe:1"), st("render", "probe:*")])
    assert await run_step(clean_db, eid, "probe:1", ok=False) == []


async def claim(engine: AsyncEngine, eid: int, name: str, worker: str) -> None:
    async with engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
        running = dag.start(state, state.attempt)
        saved = await repo.save_changes(conn, eid, [repo.Change(state, running, worker=worker)])
        await repo.open_attempts(conn, [(saved[0].step_id, saved[0].attempt)], worker)


async def test_retry_moves_a_running_step_of_a_gone_worker_or_when_forced(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "stuck", [st("render"), st("publish", "render")])
    await claim(clean_db, eid, "render", "w-live")
    async with clean_db.begin() as conn:
        with pytest.raises(InvalidTransition, match="live worker"):
            await ops.retry_step(conn, eid, "render", "ops", live={"w-live"})
    async with clean_db.begin() as conn:  # its worker stopped beating
        ready = await ops.retry_step(conn, eid, "render", "ops", live=set())
    assert [(s.name, s.attempt) for s in ready] == [("render", 2)]
    await claim(clean_db, eid, "render", "w-live")
    async with clean_db.begin() as conn:  # forced on a live worker, execution-wide
        ready = await ops.retry_execution(conn, eid, "boss", force=True, live={"w-live"})
    assert [(s.name, s.attempt) for s in ready] == [("render", 3)]
    tries = await pg.fetch(
        "SELECT a.attempt, a.status FROM pipeline_step_attempt a JOIN pipeline_step s "
        "ON s.id = a.step_id WHERE s.name = 'render' ORDER BY a.attempt"
    )
    assert [tuple(r) for r in tries] == [(1, "lost"), (2, "cancelled")]
    log = [
        tuple(r)
        for r in await pg.fetch(
            "SELECT l.actor, l.message FROM pipeline_step_log l JOIN pipeline_step s "
            "ON s.id = l.step_id WHERE s.name = 'render' ORDER BY l.id"
        )
    ]
    assert log == [
        ("ops", "retry requested by ops: its worker on w-live is gone; attempt 1 abandoned"),
        ("boss", "retry requested by boss: forced while running on w-live; attempt 2 abandoned"),
    ]
    assert await run_step(clean_db, eid, "render") == ["publish"]


async def test_a_cancelled_execution_resumes_and_what_succeeded_stays(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "resume", [st("a"), st("b", "a"), st("c", "b")])
    await run_step(clean_db, eid, "a")
    await claim(clean_db, eid, "b", "w")
    async with clean_db.begin() as conn:
        assert await ops.cancel_execution(conn, eid, "ops") == 2
    assert await execution_status(pg, eid) == "cancelled"
    async with clean_db.begin() as conn:
        ready = await ops.resume_execution(conn, eid, "ops2")
    assert [(s.name, s.attempt) for s in ready] == [("b", 2)]
    assert await execution_status(pg, eid) == "running"
    assert await run_step(clean_db, eid, "b") == ["c"]
    await run_step(clean_db, eid, "c")
    assert await execution_status(pg, eid) == "succeeded"
    rows = {
        r["name"]: r["attempt"] for r in await pg.fetch("SELECT name, attempt FROM pipeline_step")
    }
    assert rows == {"a": 1, "b": 2, "c": 1}
    resumed = await pg.fetch(
        "SELECT s.name FROM pipeline_step_log l JOIN pipeline_step s ON s.id = l.step_id "
        "WHERE l.actor = 'ops2' AND l.message = 'resumed by ops2' ORDER BY s.name"
    )
    assert [r["name"] for r in resumed] == ["b", "c"]


async def test_requeue_step_and_redo_steps_are_guarded(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    eid = await new_execution(clean_db, "rq", [st("render"), st("group")])
    await claim(clean_db, eid, "render", "w")
    async with clean_db.begin() as conn:
        assert await repo.running_steps(conn, "noop", 3600) == []
        found = await repo.running_steps(conn, "noop", 0)
    assert [r.state.name for r in found] == ["render"]
    async with clean_db.begin() as conn:  # an older attempt: nothing moves
        assert await ops.requeue_step(conn, eid, "render", 7, "why") == []
    async with clean_db.begin() as conn:
        ready = await ops.requeue_step(conn, eid, "render", 1, "job gone: requeued")
    assert [(s.name, s.attempt) for s in ready] == [("render", 2)]
    await run_step(clean_db, eid, "group")
    async with clean_db.begin() as conn:
        ready = await ops.redo_steps(conn, eid, ["group", "render"], "late landing")
    assert [(s.name, s.attempt) for s in ready] == [("group", 2)]  # render was not done
    log = await pg.fetch(
        "SELECT s.name, l.message, l.actor FROM pipeline_step_log l JOIN pipeline_step s "
        "ON s.id = l.step_id WHERE l.actor = 'system' AND l.message <> 'x' ORDER BY l.id"
    )
    assert [tuple(r) for r in log] == [
        ("render", "job gone: requeued", "system"),
        ("group", "late landing", "system"),
    ]
