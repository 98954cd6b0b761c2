"""The pipeline repository: executions, steps, attempts and step logs in PostgreSQL.

The rules live in the pure core (agents/pipeline/dag.py); this module only loads steps as
`dag.StepState`s and persists the states the core returns. Every write of a step is guarded by
the state it was computed from (`WHERE status = :old AND attempt = :old_attempt`), so two
processes acting on the same snapshot cannot both win: the loser sees fewer rows than it wrote
and raises `StaleWrite` (callers retry on a fresh snapshot). Lists are written set-based
(`unnest` arrays), never one statement per step.

`retry_step`, `retry_execution` and `cancel_execution` are what the status API and the CLI both
call; they record the actor in the step log and return the steps to dispatch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.pipeline import dag
from agents.pipeline.dag import ExecutionStatus, StepState, StepStatus
from agents.pipeline.errors import InvalidDag, PipelineError
from storage.imports import bump_counter

logger = logging.getLogger(__name__)

JsonDict = dict[str, object]
FINISHED_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class StaleWrite(PipelineError):
    """A guarded write found a step in another state than the snapshot it was computed from."""

    def __init__(self, execution_id: int, expected: int, written: int) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"execution {execution_id}: {expected - written} of {expected} step writes were stale"
        )


class ExecutionNotFound(PipelineError):
    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution {execution_id}")


@dataclass(frozen=True)
class StepRow:
    """A `pipeline_step` row: the core's view plus what only storage cares about."""

    id: int
    execution_id: int
    state: StepState
    input: JsonDict
    not_before: datetime | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """One step moving from `old` to `new` (both as the core computed them)."""

    old: StepState
    new: StepState
    output: JsonDict | None = None
    worker: str = ""
    # closes the old attempt's row: succeeded | failed | cancelled | lost
    attempt_status: str = ""
    log: str = ""
    level: str = "info"
    actor: str = "system"


@dataclass(frozen=True)
class Saved:
    """A step as written: what a step request needs when it is READY."""

    execution_id: int
    step_id: int
    name: str
    kind: str
    status: StepStatus
    attempt: int
    input: JsonDict = field(default_factory=dict)
    not_before: datetime | None = None


def ready_only(saved: Iterable[Saved]) -> list[Saved]:
    return [s for s in saved if s.status is StepStatus.READY]


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


# --- steps ------------------------------------------------------------------------------------

_COLUMNS = (
    "id, execution_id, name, kind, depends_on, spawns, status, attempt, max_attempts, "
    "spawned_by, error, waiting_for, input, not_before, started_at, ready_at"
)


def _row(r: RowMapping) -> StepRow:
    state = StepState(
        name=str(r["name"]),
        kind=str(r["kind"]),
        depends_on=frozenset(r["depends_on"] or ()),
        spawns=frozenset(r["spawns"] or ()),
        status=StepStatus(str(r["status"])),
        attempt=int(r["attempt"]),
        max_attempts=int(r["max_attempts"]),
        spawned_by=r["spawned_by"],
        error=str(r["error"]),
        waiting_for=str(r["waiting_for"]),
    )
    return StepRow(
        id=int(r["id"]),
        execution_id=int(r["execution_id"]),
        state=state,
        input=dict(r["input"] or {}),
        not_before=r["not_before"],
        started_at=r["started_at"],
        ready_at=r["ready_at"],
    )


async def load_steps(
    conn: AsyncConnection, execution_id: int, names: Sequence[str] | None = None
) -> list[StepRow]:
    """Every step of an execution, or only the named ones."""
    if names is None:
        sql = f"SELECT {_COLUMNS} FROM pipeline_step WHERE execution_id = :e"
        params: dict[str, object] = {"e": execution_id}
    else:
        sql = (
            f"SELECT {_COLUMNS} FROM pipeline_step WHERE execution_id = :e "
            "AND name = ANY(CAST(:names AS text[]))"
        )
        params = {"e": execution_id, "names": list(names)}
    return [_row(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def add_steps(
    conn: AsyncConnection,
    execution_id: int,
    steps: Sequence[StepState],
    inputs: Mapping[str, Mapping[str, object]] | None = None,
) -> list[str]:
    """Insert PENDING steps in one statement; names already there are left alone (idempotent).

    Returns the names actually inserted.
    """
    if not steps:
        return []
    inputs = inputs or {}
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "depends_on": sorted(s.depends_on),
            "spawns": sorted(s.spawns),
            "max_attempts": s.max_attempts,
            "spawned_by": s.spawned_by,
            "input": dict(inputs.get(s.name, {})),
        }
        for s in steps
    ]
    result = await conn.execute(
        text(
            "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, spawns, status, "
            "attempt, max_attempts, spawned_by, input) "
            "SELECT :e, t.name, t.kind, "
            "ARRAY(SELECT jsonb_array_elements_text(t.depends_on)), "
            "ARRAY(SELECT jsonb_array_elements_text(t.spawns)), 'pending', 0, t.max_attempts, "
            "t.spawned_by, t.input "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(name text, kind text, "
            "depends_on jsonb, spawns jsonb, max_attempts int, spawned_by text, input jsonb) "
            "ON CONFLICT ON CONSTRAINT uq_step_execution_name DO NOTHING RETURNING name"
        ),
        {"e": execution_id, "rows": json.dumps(rows)},
    )
    return [str(r[0]) for r in result]


_SAVE_SQL = text(
    """
WITH t AS (
  SELECT * FROM unnest(CAST(:names AS text[]), CAST(:old_status AS text[]),
    CAST(:old_attempt AS int[]), CAST(:status AS text[]), CAST(:attempt AS int[]),
    CAST(:error AS text[]), CAST(:waiting AS text[]), CAST(:backoff AS float8[]),
    CAST(:worker AS text[]), CAST(:output AS text[]))
    AS t(name, old_status, old_attempt, status, attempt, error, waiting_for, backoff, worker,
         output)
), c AS (SELECT clock_timestamp() AS now)
UPDATE pipeline_step s SET
  status = t.status, attempt = t.attempt, error = t.error, waiting_for = t.waiting_for,
  ready_at = CASE WHEN t.status = 'ready' AND t.attempt <> s.attempt
                  THEN c.now + make_interval(secs => t.backoff) ELSE s.ready_at END,
  not_before = CASE WHEN t.status = 'ready' AND t.attempt <> s.attempt
                    THEN CASE WHEN t.backoff > 0 THEN c.now + make_interval(secs => t.backoff) END
                    ELSE s.not_before END,
  started_at = CASE WHEN t.status = 'running' AND s.status <> 'running' THEN c.now
                    WHEN t.status = 'ready' THEN NULL ELSE s.started_at END,
  finished_at = CASE WHEN t.status IN ('succeeded', 'failed', 'skipped', 'cancelled') THEN c.now
                     WHEN t.status IN ('ready', 'running') THEN NULL ELSE s.finished_at END,
  worker = CASE WHEN t.status = 'running' AND s.status <> 'running' THEN t.worker
                WHEN t.status = 'ready' THEN NULL ELSE s.worker END,
  output = CASE WHEN t.status = 'succeeded' THEN CAST(t.output AS jsonb)
                WHEN t.status = 'ready' THEN NULL ELSE s.output END
FROM t, c
WHERE s.execution_id = :e AND s.name = t.name AND s.status = t.old_status
  AND s.attempt = t.old_attempt
RETURNING s.id, s.name, s.kind, s.status, s.attempt, s.input, s.not_before
"""
)


async def save_changes(
    conn: AsyncConnection, execution_id: int, changes: Sequence[Change], *, strict: bool = True
) -> list[Saved]:
    """Persist step changes (guarded), close attempt rows, write log lines and counters.

    Returns the steps written. A step not in the state its change was computed from is not
    written: with `strict` that raises StaleWrite (the caller retries on a fresh snapshot),
    without it (claims: another worker won) the step is just left out.
    """
    if not changes:
        return []
    result = await conn.execute(
        _SAVE_SQL,
        {
            "e": execution_id,
            "names": [c.new.name for c in changes],
            "old_status": [str(c.old.status) for c in changes],
            "old_attempt": [c.old.attempt for c in changes],
            "status": [str(c.new.status) for c in changes],
            "attempt": [c.new.attempt for c in changes],
            "error": [c.new.error[:4000] for c in changes],
            "waiting": [c.new.waiting_for for c in changes],
            "backoff": [c.new.backoff_s for c in changes],
            "worker": [c.worker[:200] for c in changes],
            "output": [json.dumps(c.output) if c.output is not None else None for c in changes],
        },
    )
    saved = result.mappings().all()
    if strict and len(saved) != len(changes):
        raise StaleWrite(execution_id, len(changes), len(saved))
    ids = {str(r["name"]): int(r["id"]) for r in saved}
    changes = [c for c in changes if c.new.name in ids]
    await _close_attempts(conn, ids, changes)
    await add_logs(
        conn,
        [
            (
                ids[c.new.name],
                c.old.attempt if c.attempt_status else c.new.attempt,
                c.level,
                c.log,
                c.actor,
            )
            for c in changes
            if c.log
        ],
    )
    await _count(conn, changes)
    return [
        Saved(
            execution_id=execution_id,
            step_id=int(r["id"]),
            name=str(r["name"]),
            kind=str(r["kind"]),
            status=StepStatus(str(r["status"])),
            attempt=int(r["attempt"]),
            input=dict(r["input"] or {}),
            not_before=r["not_before"],
        )
        for r in saved
    ]


async def _close_attempts(
    conn: AsyncConnection, ids: Mapping[str, int], changes: Sequence[Change]
) -> None:
    closing = [c for c in changes if c.attempt_status]
    if not closing:
        return
    await conn.execute(
        text(
            "UPDATE pipeline_step_attempt a SET status = t.status, error = t.error, "
            "finished_at = clock_timestamp() "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), "
            "CAST(:statuses AS text[]), CAST(:errors AS text[])) AS t(id, attempt, status, error) "
            "WHERE a.step_id = t.id AND a.attempt = t.attempt AND a.finished_at IS NULL"
        ),
        {
            "ids": [ids[c.new.name] for c in closing],
            "attempts": [c.old.attempt for c in closing],
            "statuses": [c.attempt_status for c in closing],
            "errors": [
                c.new.error[:4000] if c.attempt_status != "succeeded" else "" for c in closing
            ],
        },
    )


async def _count(conn: AsyncConnection, changes: Sequence[Change]) -> None:
    failed = sum(c.new.status is StepStatus.FAILED for c in changes)
    # A new attempt of a step that already had one: an automatic or manual retry.
    retried = sum(
        c.new.status is StepStatus.READY and c.old.attempt > 0 and c.attempt_status != "lost"
        for c in changes
    )
    requeued = sum(c.attempt_status == "lost" for c in changes)
    for name, value in (
        ("steps_failed", failed),
        ("steps_retried", retried),
        ("steps_requeued", requeued),
    ):
        if value:
            await bump_counter(conn, name, value)


async def add_logs(conn: AsyncConnection, lines: Sequence[tuple[int, int, str, str, str]]) -> None:
    """Append (step id, attempt, level, message, actor) log lines in one statement."""
    if not lines:
        return
    await conn.execute(
        text(
            "INSERT INTO pipeline_step_log (step_id, attempt, level, message, actor) "
            "SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), "
            "CAST(:levels AS text[]), CAST(:messages AS text[]), CAST(:actors AS text[]))"
        ),
        {
            "ids": [line[0] for line in lines],
            "attempts": [line[1] for line in lines],
            "levels": [line[2][:8] for line in lines],
            "messages": [line[3][:4000] for line in lines],
            "actors": [line[4][:200] for line in lines],
        },
    )


async def open_attempts(
    conn: AsyncConnection, attempts: Sequence[tuple[int, int]], worker: str
) -> None:
    """Record that (step id, attempt) pairs started on `worker` (redelivery inserts nothing)."""
    if not attempts:
        return
    await conn.execute(
        text(
            "INSERT INTO pipeline_step_attempt (step_id, attempt, status, worker, started_at) "
            "SELECT id, attempt, 'running', :w, clock_timestamp() "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS t(id, attempt) "
            "ON CONFLICT (step_id, attempt) DO NOTHING"
        ),
        {"ids": [a[0] for a in attempts], "attempts": [a[1] for a in attempts], "w": worker},
    )


# --- incremental readiness ---------------------------------------------------------------------

_CANDIDATES_SQL = text(
    """
SELECT c.name FROM pipeline_step c
WHERE c.execution_id = :e AND c.status = 'pending'
  AND (c.name = ANY(CAST(:added AS text[]))
       OR EXISTS (SELECT 1 FROM unnest(c.depends_on) r, unnest(CAST(:done AS text[])) d
                  WHERE r = d OR (right(r, 1) = '*' AND starts_with(d, left(r, -1))))
       OR EXISTS (SELECT 1 FROM unnest(c.depends_on) r, unnest(CAST(:spawns AS text[])) p
                  WHERE right(r, 1) = '*' AND (starts_with(left(r, -1), left(p, -1))
                                               OR starts_with(left(p, -1), left(r, -1)))))
  AND NOT EXISTS (
       SELECT 1 FROM unnest(c.depends_on) r JOIN pipeline_step u ON u.execution_id = :e
         AND u.status NOT IN ('succeeded', 'skipped')
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
    """PENDING steps that may have become ready because `done` finished or `added` appeared.

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
        _row(r)
        for r in (
            await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM pipeline_step s WHERE s.execution_id = :e AND ("
                    "s.name = ANY(CAST(:c AS text[])) OR cardinality(s.spawns) > 0 "
                    "OR EXISTS (SELECT 1 FROM pipeline_step c, unnest(c.depends_on) r "
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


async def retry_step(
    conn: AsyncConnection, execution_id: int, name: str, actor: str
) -> list[Saved]:
    """Retry one FAILED step (beyond max_attempts: a human asked); raises InvalidTransition."""
    await lock_execution(conn, execution_id)
    rows = await load_steps(conn, execution_id, [name])
    if not rows:
        raise InvalidDag(name, f"no step {name!r} in execution {execution_id}")
    old = rows[0].state
    new = dag.retry(old)
    out = ready_only(
        await save_changes(
            conn, execution_id, [Change(old, new, log=f"retry requested by {actor}", actor=actor)]
        )
    )
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: step %s retried by %s", execution_id, name, actor)
    return out


async def retry_execution(conn: AsyncConnection, execution_id: int, actor: str) -> list[Saved]:
    """Retry every FAILED step; what they blocked runs once they succeed; succeeded stays."""
    await lock_execution(conn, execution_id)
    olds = {r.state.name: r.state for r in await load_steps(conn, execution_id)}
    changes = [
        Change(olds[s.name], s, log=f"retry requested by {actor}", actor=actor)
        for s in dag.retry_execution(olds.values())
    ]
    out = ready_only(await save_changes(conn, execution_id, changes))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %d failed steps retried by %s", execution_id, len(out), actor)
    return out


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


async def set_progress(conn: AsyncConnection, rows: Sequence[tuple[int, str, int, float]]) -> None:
    """(execution, step, attempt, fraction): only a RUNNING step of that attempt is updated."""
    if not rows:
        return
    await conn.execute(
        text(
            "UPDATE pipeline_step s SET progress = LEAST(1.0, GREATEST(0.0, p.progress)) "
            "FROM unnest(CAST(:e AS bigint[]), CAST(:n AS text[]), CAST(:a AS int[]), "
            "CAST(:p AS double precision[])) AS p(execution_id, name, attempt, progress) "
            "WHERE s.execution_id = p.execution_id AND s.name = p.name "
            "AND s.attempt = p.attempt AND s.status = 'running'"
        ),
        {
            "e": [r[0] for r in rows],
            "n": [r[1] for r in rows],
            "a": [r[2] for r in rows],
            "p": [r[3] for r in rows],
        },
    )
