"""The pipeline repository: executions, steps, attempts and step logs in PostgreSQL.

The rules live in the pure core (agents/pipeline/dag.py); this module only loads steps as
`dag.StepState`s and persists the states the core returns. Step rows themselves (loading,
inserting, guarded saving that raises `StaleWrite`, attempts, logs, progress) live in
`storage/pipeline_steps.py` and are re-exported here; this module adds executions, incremental
readiness, execution status and the operator actions.

`retry_step`, `retry_execution`, `resume_execution` and `cancel_execution` are what the status
API and the CLI both call; they record the actor in the step log and return the steps to
dispatch. A retry moves a RUNNING step only when its worker is gone (not in the live set the
caller passes) or when forced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.pipeline import dag
from agents.pipeline.dag import ExecutionStatus, StepStatus
from agents.pipeline.errors import InvalidDag, PipelineError
from storage.pipeline_steps import (
    STEP_COLUMNS,
    Change,
    JsonDict,
    Saved,
    StaleWrite,
    StepRow,
    add_logs,
    add_steps,
    load_steps,
    open_attempts,
    ready_only,
    save_changes,
    set_progress,
    step_row,
)

__all__ = [
    "FINISHED_EXECUTION",
    "Change",
    "ExecutionNotFound",
    "JsonDict",
    "Saved",
    "StaleWrite",
    "StepRow",
    "active_executions",
    "add_logs",
    "add_steps",
    "cancel_execution",
    "create_execution",
    "load_steps",
    "load_upstream",
    "lock_execution",
    "open_attempts",
    "promote",
    "promote_all",
    "promotion_candidates",
    "ready_only",
    "redo_steps",
    "refresh_execution_status",
    "requeue_step",
    "resume_execution",
    "retry_execution",
    "retry_step",
    "running_steps",
    "save_changes",
    "set_execution_status",
    "set_progress",
    "status_counts",
]

logger = logging.getLogger(__name__)

FINISHED_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class ExecutionNotFound(PipelineError):
    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution {execution_id}")


# --- executions -------------------------------------------------------------------------------


async def create_execution(
    conn: AsyncConnection,
    *,
    key: str,
    pipeline: str,
    subject_type: str,
    subject_id: str,
    context: Mapping[str, object] | None = None,
) -> tuple[int, bool]:
    """(execution id, created?) — the same key always names the same execution."""
    row = (
        await conn.execute(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status, "
                "context) VALUES (:k, :p, :st, :si, 'pending', CAST(:c AS jsonb)) "
                "ON CONFLICT (key) DO NOTHING RETURNING id"
            ),
            {
                "k": key,
                "p": pipeline,
                "st": subject_type,
                "si": subject_id,
                "c": json.dumps(dict(context or {})),
            },
        )
    ).first()
    if row is not None:
        return int(row[0]), True
    found = await conn.scalar(text("SELECT id FROM pipeline_execution WHERE key = :k"), {"k": key})
    return int(found), False


async def lock_execution(conn: AsyncConnection, execution_id: int) -> ExecutionStatus:
    """Lock the execution row for this transaction: one writer of its DAG at a time."""
    status = await conn.scalar(
        text("SELECT status FROM pipeline_execution WHERE id = :e FOR UPDATE"),
        {"e": execution_id},
    )
    if status is None:
        raise ExecutionNotFound(execution_id)
    return ExecutionStatus(status)


async def set_execution_status(
    conn: AsyncConnection, execution_id: int, status: ExecutionStatus
) -> bool:
    """True when the status changed."""
    result = await conn.execute(
        text(
            "UPDATE pipeline_execution SET status = :s, updated_at = clock_timestamp(), "
            "finished_at = CASE WHEN :fin THEN clock_timestamp() END "
            "WHERE id = :e AND status <> :s"
        ),
        {"e": execution_id, "s": str(status), "fin": status in FINISHED_EXECUTION},
    )
    return bool(result.rowcount)


async def active_executions(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        text(
            "SELECT id FROM pipeline_execution WHERE status IN ('pending', 'running', 'waiting') "
            "ORDER BY id"
        )
    )
    return [int(r[0]) for r in rows]


# --- incremental readiness ---------------------------------------------------------------------

_CANDIDATES_SQL = text(
    """
SELECT c.name FROM pipeline_step c
WHERE c.execution_id = :e AND c.status = 'pending'
  AND (c.name = ANY(CAST(:added AS text[]))
       OR EXISTS (SELECT 1 FROM unnest(c.depends_on) r0, ltrim(r0, '?') r,
                          unnest(CAST(:done AS text[])) d
                  WHERE r = d OR (right(r, 1) = '*' AND starts_with(d, left(r, -1))))
       OR EXISTS (SELECT 1 FROM unnest(c.depends_on) r0, ltrim(r0, '?') r,
                          unnest(CAST(:spawns AS text[])) p
                  WHERE right(r, 1) = '*' AND (starts_with(left(r, -1), left(p, -1))
                                               OR starts_with(left(p, -1), left(r, -1)))))
  AND NOT EXISTS (
       SELECT 1 FROM unnest(c.depends_on) r0 CROSS JOIN LATERAL ltrim(r0, '?') r
         JOIN pipeline_step u ON u.execution_id = :e
         AND u.status NOT IN ('succeeded', 'skipped')
         AND NOT (starts_with(r0, '?') AND u.status IN ('failed', 'cancelled'))
         AND (u.name = r OR (right(r, 1) = '*' AND starts_with(u.name, left(r, -1)))))
"""
)


async def promotion_candidates(
    conn: AsyncConnection,
    execution_id: int,
    done: Sequence[str],
    done_spawns: Iterable[str],
    added: Sequence[str],
) -> list[str]:
    """PENDING steps that may have become ready because `done` finished (in any way: a settled
    dependency goes on after a failure) or `added` appeared.

    Only a narrowing for speed, with no false negatives: it drops a step only when something
    it waits for is visibly not done. The pure core decides on what is left (`promote`).
    """
    if not done and not added:
        return []
    rows = await conn.execute(
        _CANDIDATES_SQL,
        {
            "e": execution_id,
            "done": list(done),
            "spawns": sorted(set(done_spawns)),
            "added": list(added),
        },
    )
    return [str(r[0]) for r in rows]


async def load_upstream(
    conn: AsyncConnection, execution_id: int, candidates: Sequence[str]
) -> list[StepRow]:
    """The candidates plus everything `dag` needs to judge them: exact dependencies, steps
    matching their patterns, and every step that may spawn (a pattern's possible sources)."""
    return [
        step_row(r)
        for r in (
            await conn.execute(
                text(
                    f"SELECT {STEP_COLUMNS} FROM pipeline_step s WHERE s.execution_id = :e AND ("
                    "s.name = ANY(CAST(:c AS text[])) OR cardinality(s.spawns) > 0 "
                    "OR EXISTS (SELECT 1 FROM pipeline_step c, unnest(c.depends_on) r0, "
                    "  ltrim(r0, '?') r "
                    "  WHERE c.execution_id = :e AND c.name = ANY(CAST(:c AS text[])) "
                    "  AND (r = s.name OR (right(r, 1) = '*' "
                    "       AND starts_with(s.name, left(r, -1))))))"
                ),
                {"e": execution_id, "c": list(candidates)},
            )
        ).mappings()
    ]


async def promote(
    conn: AsyncConnection,
    execution_id: int,
    done: Sequence[str],
    done_spawns: Iterable[str] = (),
    added: Sequence[str] = (),
) -> list[Saved]:
    """Move what became ready after `done` finished / `added` appeared to READY (returned)."""
    candidates = await promotion_candidates(conn, execution_id, done, done_spawns, added)
    if not candidates:
        return []
    wanted = set(candidates)
    graph = await load_upstream(conn, execution_id, candidates)
    olds = {r.state.name: r.state for r in graph}
    changes = [
        Change(olds[s.name], s) for s in dag.promote_ready(olds.values()) if s.name in wanted
    ]
    return await save_changes(conn, execution_id, changes)


async def promote_all(conn: AsyncConnection, execution_id: int) -> list[Saved]:
    """The full check (start, reconciliation): every PENDING step whose dependencies are done."""
    states = [r.state for r in await load_steps(conn, execution_id)]
    olds = {s.name: s for s in states}
    return await save_changes(
        conn, execution_id, [Change(olds[s.name], s) for s in dag.promote_ready(states)]
    )


async def status_counts(conn: AsyncConnection, execution_id: int) -> dict[str, int]:
    rows = await conn.execute(
        text(
            "SELECT CASE WHEN status = 'running' AND waiting_for <> '' THEN 'waiting' "
            "ELSE status END, count(*) FROM pipeline_step WHERE execution_id = :e GROUP BY 1"
        ),
        {"e": execution_id},
    )
    return {str(s): int(n) for s, n in rows}


async def refresh_execution_status(
    conn: AsyncConnection, execution_id: int
) -> ExecutionStatus | None:
    """Recompute and store the execution's status; returns it when it changed.

    Counts decide the common cases; only a quiescent execution (nothing ready or running) is
    loaded whole for the core's `execution_status`.
    """
    c = await status_counts(conn, execution_id)
    total = sum(c.values())
    if total and c.get("succeeded", 0) + c.get("skipped", 0) == total:
        status = ExecutionStatus.SUCCEEDED
    elif c.get("ready", 0) or c.get("running", 0):
        status = ExecutionStatus.RUNNING
    else:
        status = dag.execution_status(r.state for r in await load_steps(conn, execution_id))
    return status if await set_execution_status(conn, execution_id, status) else None


# --- operator actions (status API and CLI) ------------------------------------------------------


def _gone(r: StepRow, live: set[str]) -> bool:
    return r.state.status is StepStatus.RUNNING and (not r.worker or r.worker not in live)


async def retry_step(
    conn: AsyncConnection,
    execution_id: int,
    name: str,
    actor: str,
    *,
    force: bool = False,
    live: set[str] | None = None,
) -> list[Saved]:
    """Retry one FAILED step (beyond max_attempts: a human asked), or a RUNNING one whose worker
    is not in `live` (or any with `force`); raises InvalidTransition when refused."""
    await lock_execution(conn, execution_id)
    rows = await load_steps(conn, execution_id, [name])
    if not rows:
        raise InvalidDag(name, f"no step {name!r} in execution {execution_id}")
    row = rows[0]
    old = row.state
    gone = live is not None and _gone(row, live)
    new = dag.operator_retry(old, worker_gone=gone, force=force)
    changes = [_retry_change(row, new, actor, force=force, gone=gone)]
    everything = {r.state.name: r.state for r in await load_steps(conn, execution_id)}
    if old.status is StepStatus.FAILED:
        changes += [
            Change(
                everything[s.name],
                s,
                log=f"runs again after {name} (retry by {actor})",
                actor=actor,
            )
            for s in dag.rerun_after_retry(everything.values(), [name])
        ]
    out = ready_only(await save_changes(conn, execution_id, changes))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: step %s retried by %s", execution_id, name, actor)
    return out


def _retry_change(
    row: StepRow, new: dag.StepState, actor: str, *, force: bool, gone: bool
) -> Change:
    old = row.state
    if old.status is not StepStatus.RUNNING:
        return Change(old, new, log=f"retry requested by {actor}", actor=actor)
    on = f" on {row.worker}" if row.worker else ""
    why = f"its worker{on} is gone" if gone else f"forced while running{on}"
    return Change(
        old,
        new,
        attempt_status="lost" if gone else "cancelled",
        level="warning",
        log=f"retry requested by {actor}: {why}; attempt {old.attempt} abandoned",
        actor=actor,
    )


async def retry_execution(
    conn: AsyncConnection,
    execution_id: int,
    actor: str,
    *,
    force: bool = False,
    live: set[str] | None = None,
) -> list[Saved]:
    """Retry every FAILED step (and every RUNNING one whose worker is not in `live`, or with
    `force` every running one); what they blocked runs once they succeed; succeeded stays."""
    await lock_execution(conn, execution_id)
    rows = {r.state.name: r for r in await load_steps(conn, execution_id)}
    olds = {n: r.state for n, r in rows.items()}
    movable = [
        n
        for n, r in rows.items()
        if r.state.status is StepStatus.RUNNING and (force or (live is not None and _gone(r, live)))
    ]
    changes = []
    for s in dag.retry_execution(olds.values(), movable):
        old = olds[s.name]
        if old.status is StepStatus.RUNNING:
            gone = live is not None and _gone(rows[s.name], live)
            changes.append(_retry_change(rows[s.name], s, actor, force=force, gone=gone))
            continue
        what = "retry" if old.status is StepStatus.FAILED else "run again"
        changes.append(Change(old, s, log=f"{what} requested by {actor}", actor=actor))
    out = ready_only(await save_changes(conn, execution_id, changes))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %d steps retried by %s", execution_id, len(out), actor)
    return out


async def resume_execution(conn: AsyncConnection, execution_id: int, actor: str) -> list[Saved]:
    """Resume a cancelled execution: cancelled steps go back to PENDING (and READY when their
    dependencies are done, returned); what succeeded never runs again."""
    await lock_execution(conn, execution_id)
    olds = {r.state.name: r.state for r in await load_steps(conn, execution_id)}
    changes = [
        Change(olds[s.name], s, log=f"resumed by {actor}", actor=actor)
        for s in dag.resume_execution(olds.values())
    ]
    await save_changes(conn, execution_id, changes)
    ready = await promote_all(conn, execution_id)
    await refresh_execution_status(conn, execution_id)
    logger.info(
        "execution %d: resumed by %s (%d steps, %d ready)",
        execution_id,
        actor,
        len(changes),
        len(ready),
    )
    return ready


async def cancel_execution(conn: AsyncConnection, execution_id: int, actor: str) -> int:
    """Cancel every unfinished step; a running attempt's late result is then ignored."""
    await lock_execution(conn, execution_id)
    olds = {r.state.name: r.state for r in await load_steps(conn, execution_id)}
    changes = [
        Change(
            olds[s.name],
            s,
            attempt_status="cancelled" if olds[s.name].status is StepStatus.RUNNING else "",
            log=f"cancelled by {actor}",
            actor=actor,
        )
        for s in dag.cancel_execution(olds.values())
    ]
    await save_changes(conn, execution_id, changes)
    await set_execution_status(conn, execution_id, ExecutionStatus.CANCELLED)
    logger.info("execution %d: cancelled by %s (%d steps)", execution_id, actor, len(changes))
    return len(changes)


# --- reconciliation ----------------------------------------------------------------------------


async def running_steps(conn: AsyncConnection, kind: str, older_than_s: float) -> list[StepRow]:
    """RUNNING steps of `kind` (waiting or not) whose attempt started over `older_than_s` ago."""
    rows = await conn.execute(
        text(
            f"SELECT {STEP_COLUMNS} FROM pipeline_step WHERE kind = :k AND status = 'running' "
            "AND started_at < now() - make_interval(secs => :s) ORDER BY execution_id, name"
        ),
        {"k": kind, "s": older_than_s},
    )
    return [step_row(r) for r in rows.mappings()]


async def requeue_step(
    conn: AsyncConnection, execution_id: int, name: str, attempt: int, reason: str
) -> list[Saved]:
    """Requeue a RUNNING step as a new attempt if it is still at `attempt` (the lost one is
    closed as `lost`); returns what became ready (nothing when it moved on meanwhile)."""
    await lock_execution(conn, execution_id)
    rows = await load_steps(conn, execution_id, [name])
    if not rows or rows[0].state.status is not StepStatus.RUNNING:
        return []
    old = rows[0].state
    if old.attempt != attempt:
        return []
    change = Change(
        old, dag.requeue(old), attempt_status="lost", level="warning", log=reason, actor="system"
    )
    out = ready_only(await save_changes(conn, execution_id, [change]))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %s requeued: %s", execution_id, name, reason)
    return out


async def redo_steps(
    conn: AsyncConnection, execution_id: int, names: Sequence[str], reason: str
) -> list[Saved]:
    """Run finished (succeeded/skipped) steps again: PENDING, then READY when their
    dependencies are done (returned). Steps not done are left as they are."""
    await lock_execution(conn, execution_id)
    olds = {r.state.name: r.state for r in await load_steps(conn, execution_id, names)}
    changes = [
        Change(old, dag.redo(old), log=reason, actor="system") for old in olds.values() if old.done
    ]
    if not changes:
        return []
    await save_changes(conn, execution_id, changes)
    ready = await promote_all(conn, execution_id)
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %s run again: %s", execution_id, ", ".join(olds), reason)
    return ready
