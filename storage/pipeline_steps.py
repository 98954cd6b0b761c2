"""Pipeline steps in PostgreSQL: loading, inserting and guarded saving of step states.

Part of the pipeline repository (`storage/pipeline.py`, which re-exports everything public here
and adds executions and readiness queries on top). Rows load as plain `StepFields`; the pipeline
engine turns them into the pure core's states (agents/pipeline/operations.py) and hands back
what the core computed as `Change`s, persisted here with the attempt rows, step log lines,
progress and the step counters that go with them. Nothing here knows the core's rules.

Every write of a step is guarded by the state it was computed from (`WHERE status = :old AND
attempt = :old_attempt`), so two processes acting on the same snapshot cannot both win: the loser
sees fewer rows than it wrote and raises `StaleWrite` (callers retry on a fresh snapshot). Lists
are written set-based (`unnest` arrays), never one statement per step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.enums import StepStatus
from storage.imports import bump_counter
from storage.step_fields import StepFields

JsonDict = dict[str, object]


class PipelineStoreError(Exception):
    """Base of the errors the pipeline repository raises."""


class StaleWrite(PipelineStoreError):
    """A guarded write found a step in another state than the snapshot it was computed from."""

    def __init__(self, execution_id: int, expected: int, written: int) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"execution {execution_id}: {expected - written} of {expected} step writes were stale"
        )


@dataclass(frozen=True)
class StepRow:
    """A `pipeline_step` row: the DAG columns plus what only storage cares about."""

    id: int
    execution_id: int
    state: StepFields
    input: JsonDict
    not_before: datetime | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None
    worker: str | None = None  # who claimed the current attempt


@dataclass(frozen=True)
class Change:
    """One step moving from `old` to `new` (both as the core computed them)."""

    old: StepFields
    new: StepFields
    output: JsonDict | None = None
    worker: str = ""
    # closes the old attempt's row: succeeded | failed | cancelled | lost
    attempt_status: str = ""
    log: str = ""
    level: str = "info"
    actor: str = "system"


class Saved(NamedTuple):
    """A step as written: what a step request needs when it is READY.

    A named tuple, not a frozen dataclass: a fan-out's promotion makes ~1,000 of them between
    its `UPDATE` and the claim that follows it, and a frozen dataclass's `__init__` (one
    `object.__setattr__` a field) took 1.3 ms of that path against 0.2 ms (issue 18)."""

    execution_id: int
    step_id: int
    name: str
    kind: str
    status: StepStatus
    attempt: int
    input: JsonDict
    not_before: datetime | None = None


def ready_only(saved: Iterable[Saved]) -> list[Saved]:
    return [s for s in saved if s.status is StepStatus.READY]


STEP_COLUMNS = (
    "id, execution_id, name, kind, depends_on, spawns, status, attempt, max_attempts, "
    "spawned_by, error, waiting_for, input, not_before, started_at, ready_at, worker"
)


def step_row(r: RowMapping) -> StepRow:
    state = StepFields(
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
        worker=r["worker"],
    )


async def load_steps(
    conn: AsyncConnection, execution_id: int, names: Sequence[str] | None = None
) -> list[StepRow]:
    """Every step of an execution, or only the named ones."""
    if names is None:
        sql = f"SELECT {STEP_COLUMNS} FROM pipeline_step WHERE execution_id = :e"
        params: dict[str, object] = {"e": execution_id}
    else:
        sql = (
            f"SELECT {STEP_COLUMNS} FROM pipeline_step WHERE execution_id = :e "
            "AND name = ANY(CAST(:names AS text[]))"
        )
        params = {"e": execution_id, "names": list(names)}
    return [step_row(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def add_steps(
    conn: AsyncConnection,
    execution_id: int,
    steps: Sequence[StepFields],
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
