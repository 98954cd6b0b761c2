"""The pipeline repository: executions, steps, attempts and step logs in PostgreSQL.

The rules live in the pure core (agents/pipeline/dag.py) and the engine applies them
(agents/pipeline/operations.py: promotion, retry, resume, cancel, requeue); this module only
loads and persists. Step rows themselves (loading as `StepFields`, inserting, guarded saving that
raises `StaleWrite`, attempts, logs, progress) live in `storage/pipeline_steps.py` and are
re-exported here; this module adds executions, the incremental-readiness narrowing queries,
status counts and the reconciliation query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.enums import ExecutionStatus
from storage.pipeline_promote import save_promotions
from storage.pipeline_steps import (
    STEP_COLUMNS,
    Change,
    JsonDict,
    PipelineStoreError,
    Saved,
    StaleWrite,
    StepFields,
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
    "PipelineStoreError",
    "Saved",
    "StaleWrite",
    "StepFields",
    "StepRow",
    "active_executions",
    "add_logs",
    "add_steps",
    "create_execution",
    "executions_of_dead_workers",
    "executions_overview",
    "load_steps",
    "load_upstream",
    "lock_execution",
    "open_attempts",
    "promotion_candidates",
    "ready_only",
    "running_steps",
    "save_changes",
    "save_promotions",
    "set_execution_status",
    "set_progress",
    "status_counts",
    "succeeded_output",
]

FINISHED_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class ExecutionNotFound(PipelineStoreError):
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


#: Executions that can hold a step not done: all but the succeeded ones (a succeeded execution's
#: steps are all done). pipeline_step has no index on status (migration 0012: its updates stay
#: heap-only), so a query for steps by status across executions starts from these, few and
#: indexed (ix_execution_status_id), and reaches their steps by uq_step_execution_name.
UNFINISHED_EXECUTIONS = "SELECT id FROM pipeline_execution WHERE status IN ({})".format(
    ", ".join(f"'{s.value}'" for s in ExecutionStatus if s is not ExecutionStatus.SUCCEEDED)
)


async def active_executions(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        text(
            "SELECT id FROM pipeline_execution WHERE status IN ('pending', 'running', 'waiting') "
            "ORDER BY id"
        )
    )
    return [int(r[0]) for r in rows]


# --- incremental readiness ---------------------------------------------------------------------

# The "visibly not done" test is two NOT EXISTS, exact name and pattern, not one with an OR: the
# exact one is an index lookup, and a step's plain dependency no longer scans the execution
# (issue 18: a 1,000-step fan-out's candidates went from 0.9-3.4 s to a few ms).

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
         JOIN pipeline_step u ON u.execution_id = :e AND u.name = r
         AND u.status NOT IN ('succeeded', 'skipped')
         AND NOT (starts_with(r0, '?') AND u.status IN ('failed', 'cancelled')))
  AND NOT EXISTS (
       SELECT 1 FROM unnest(c.depends_on) r0 CROSS JOIN LATERAL ltrim(r0, '?') r
       WHERE right(r, 1) = '*' AND EXISTS (
         SELECT 1 FROM pipeline_step u WHERE u.execution_id = :e
         AND starts_with(u.name, left(r, -1))
         AND u.status NOT IN ('succeeded', 'skipped')
         AND NOT (starts_with(r0, '?') AND u.status IN ('failed', 'cancelled'))))
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


async def status_counts(conn: AsyncConnection, execution_id: int) -> dict[str, int]:
    rows = await conn.execute(
        text(
            "SELECT CASE WHEN status = 'running' AND waiting_for <> '' THEN 'waiting' "
            "ELSE status END, count(*) FROM pipeline_step WHERE execution_id = :e GROUP BY 1"
        ),
        {"e": execution_id},
    )
    return {str(s): int(n) for s, n in rows}


# --- reconciliation ----------------------------------------------------------------------------


async def running_steps(conn: AsyncConnection, kind: str, older_than_s: float) -> list[StepRow]:
    """RUNNING steps of `kind` (waiting or not) whose attempt started over `older_than_s` ago."""
    rows = await conn.execute(
        text(
            f"SELECT {STEP_COLUMNS} FROM pipeline_step WHERE execution_id IN "
            f"({UNFINISHED_EXECUTIONS}) AND kind = :k AND status = 'running' "
            "AND started_at < now() - make_interval(secs => :s) ORDER BY execution_id, name"
        ),
        {"k": kind, "s": older_than_s},
    )
    return [step_row(r) for r in rows.mappings()]


async def executions_of_dead_workers(
    conn: AsyncConnection, live: set[str], dead_after_s: float
) -> list[int]:
    """Executions with a RUNNING (not waiting) step claimed by a worker not in `live` over
    `dead_after_s` ago."""
    rows = await conn.execute(
        text(
            "SELECT DISTINCT execution_id FROM pipeline_step WHERE execution_id IN "
            f"({UNFINISHED_EXECUTIONS}) AND status = 'running' "
            "AND waiting_for = '' AND worker IS NOT NULL "
            "AND NOT (worker = ANY(CAST(:live AS text[]))) "
            "AND started_at < now() - make_interval(secs => :dead)"
        ),
        {"live": sorted(live), "dead": dead_after_s},
    )
    return [int(r[0]) for r in rows]


async def succeeded_output(conn: AsyncConnection, execution_id: int, name: str) -> object:
    """The stored output of a step that succeeded (None when it did not, or has none)."""
    return await conn.scalar(
        text(
            "SELECT output FROM pipeline_step WHERE execution_id = :e AND name = :n "
            "AND status = 'succeeded'"
        ),
        {"e": execution_id, "n": name},
    )


@dataclass(frozen=True)
class ExecutionLine:
    """One execution as `skyreel executions` lists it."""

    id: int
    key: str
    pipeline: str
    status: str
    created_at: datetime
    steps: str | None  # "status=n ..." over its steps
    # whose it is: a jump's booking, passenger and capture time, and the card (None: unknown)
    booking_id: str | None = None
    passenger: str | None = None
    capture_start: datetime | None = None
    card_id: str | None = None


async def executions_overview(conn: AsyncConnection, limit: int) -> list[ExecutionLine]:
    """The latest executions, newest first, with their step counts by status and whose they are."""
    rows = await conn.execute(
        text(
            "SELECT e.id, e.key, e.pipeline, e.status, e.created_at, "
            "(SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM "
            " (SELECT status, count(*) n FROM pipeline_step s WHERE s.execution_id = e.id "
            "  GROUP BY status) c) AS steps, "
            "coalesce(js.booking_id, e.context ->> 'booking_id') AS booking_id, "
            "coalesce(js.passenger, e.context ->> 'passenger') AS passenger, "
            "js.capture_start, "
            "CASE WHEN e.subject_type = 'card' THEN e.subject_id ELSE js.card_id END AS card_id "
            "FROM pipeline_execution e LEFT JOIN jump_session js "
            "ON e.subject_type = 'session' AND js.key = e.subject_id "
            "ORDER BY e.id DESC LIMIT :n"
        ),
        {"n": limit},
    )
    return [
        ExecutionLine(
            r.id,
            r.key,
            r.pipeline,
            r.status,
            r.created_at,
            r.steps,
            booking_id=r.booking_id,
            passenger=r.passenger,
            capture_start=r.capture_start,
            card_id=r.card_id,
        )
        for r in rows
    ]
