"""Running a step and everything after it again (`dag.rerun_from`, `operations.rerun_step`): what an
operator's new marks do to a jump's phases, render and publish. The pure core directly, the
operation on real PostgreSQL."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dag import StepState, StepStatus
from agents.pipeline.errors import InvalidDag, InvalidTransition
from storage import pipeline as repo


def st(name: str, *deps: str, status: StepStatus = StepStatus.SUCCEEDED, attempt: int = 1,
       waiting: str = "") -> StepState:  # fmt: skip
    return StepState(
        name, "noop", frozenset(deps), frozenset(), status=status, attempt=attempt,
        waiting_for=waiting,
    )  # fmt: skip


def jump(**statuses: StepStatus) -> list[StepState]:
    """A jump's steps, all succeeded unless said otherwise."""
    steps = [
        st("copy:1"),
        st("probe:1", "copy:1"),
        st("booking"),
        st("phases", "?probe:*"),
        st("render", "?probe:*", "booking", "phases"),
        st("publish", "render"),
        st("other"),
    ]
    return [dataclasses.replace(s, status=statuses.get(s.name.replace(":", "_"), s.status))
            for s in steps]  # fmt: skip


def test_rerun_sets_the_step_and_its_dependants_pending_and_nothing_else() -> None:
    again = dag.rerun_from(jump(), "phases")
    assert sorted(s.name for s in again) == ["phases", "publish", "render"]
    assert all(s.status is StepStatus.PENDING and s.attempt == 1 for s in again)
    steps = {s.name: s for s in jump()}
    steps.update({s.name: s for s in again})
    # promotion opens a new attempt of phases; render and publish wait for it again
    ready = dag.promote_ready(steps.values())
    assert [(s.name, s.attempt) for s in ready] == [("phases", 2)]


def test_rerun_moves_running_waiting_and_failed_dependants_too() -> None:
    steps = jump(render=StepStatus.RUNNING, publish=StepStatus.PENDING)
    steps = [dataclasses.replace(s, waiting_for="waiting for a person") if s.name == "render"
             else s for s in steps]  # fmt: skip
    again = {s.name: s for s in dag.rerun_from(steps, "phases")}
    assert set(again) == {"phases", "render"}  # publish is pending already
    assert again["render"].waiting_for == "" and again["render"].status is StepStatus.PENDING
    failed = dag.rerun_from(jump(publish=StepStatus.FAILED), "phases")
    assert {s.name for s in failed} == {"phases", "render", "publish"}
    assert all(s.error == "" for s in failed)


def test_rerun_follows_patterns_and_settled_dependencies() -> None:
    again = dag.rerun_from(jump(), "probe:1")
    assert sorted(s.name for s in again) == ["phases", "probe:1", "publish", "render"]


def test_rerun_of_an_unknown_step_is_refused() -> None:
    with pytest.raises(InvalidDag):
        dag.rerun_from(jump(), "nope")


def test_a_late_result_of_an_abandoned_attempt_is_not_applied() -> None:
    running = st("render", status=StepStatus.RUNNING, attempt=3)
    pending = dag.rerun(running)
    assert pending.status is StepStatus.PENDING
    with pytest.raises(InvalidTransition):
        dag.apply_result(pending, 3, dag.Success(), dag_policy())
    assert dag.rerun(pending) is pending


def dag_policy() -> dag.BackoffPolicy:
    from agents.pipeline.registry import StepKind

    return StepKind("noop")


# --- on PostgreSQL -------------------------------------------------------------------------------


async def test_rerun_step_closes_running_attempts_and_dispatches_the_step(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    defs = [
        StepState("phases", "noop"),
        StepState("render", "noop", frozenset({"phases"})),
        StepState("publish", "noop", frozenset({"render"})),
    ]
    async with clean_db.begin() as conn:
        eid, _ = await repo.create_execution(
            conn, key="rerun", pipeline="test", subject_type="test", subject_id="rerun"
        )
        await repo.add_steps(conn, eid, defs, {})
        await ops.promote_all(conn, eid)
    await finish(clean_db, eid, "phases")
    await claim(clean_db, eid, "render")  # the render is running (or waiting for a person)

    async with clean_db.begin() as conn:
        ready = await ops.rerun_step(conn, eid, "phases", "admin", "marks set by admin")
    assert [(s.name, s.attempt) for s in ready] == [("phases", 2)]
    rows = {
        r["name"]: (r["status"], r["attempt"])
        for r in await pg.fetch("SELECT name, status, attempt FROM pipeline_step")
    }
    assert rows == {"phases": ("ready", 2), "render": ("pending", 1), "publish": ("pending", 0)}
    closed = await pg.fetchval(
        "SELECT a.status FROM pipeline_step_attempt a JOIN pipeline_step s ON s.id = a.step_id "
        "WHERE s.name = 'render' AND a.attempt = 1"
    )
    assert closed == "cancelled"
    log = await pg.fetch(
        "SELECT s.name, l.message FROM pipeline_step_log l JOIN pipeline_step s "
        "ON s.id = l.step_id WHERE l.actor = 'admin' ORDER BY s.name"
    )
    assert [tuple(r) for r in log] == [
        ("phases", "runs again: marks set by admin"),
        ("render", "runs again after phases: marks set by admin"),
    ]
    status = await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid)
    assert status == "running"
    async with clean_db.begin() as conn:
        with pytest.raises(InvalidDag):
            await ops.rerun_step(conn, eid, "nope", "admin", "x")


async def claim(engine: AsyncEngine, eid: int, name: str) -> StepState:
    async with engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
        running = dag.start(state, state.attempt)
        saved = await repo.save_changes(conn, eid, [repo.Change(state, running, worker="w")])
        await repo.open_attempts(conn, [(saved[0].step_id, saved[0].attempt)], "w")
    return running


async def finish(engine: AsyncEngine, eid: int, name: str) -> None:
    running = await claim(engine, eid, name)
    async with engine.begin() as conn:
        await repo.lock_execution(conn, eid)
        new = dag.apply_result(running, running.attempt, dag.Success(), dag_policy())
        await repo.save_changes(
            conn, eid, [repo.Change(running, new, output={}, attempt_status="succeeded")]
        )
        await ops.promote(conn, eid, [name])
        await ops.refresh_execution_status(conn, eid)
