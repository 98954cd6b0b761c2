"""The claim fast path (issue 18): READY steps at the requested attempt -> RUNNING in one
statement, their attempt rows opened in the same statement.

This is exactly the one case of `dag.start` that claims (a READY step, the attempt it was
dispatched at, its `not_before` passed); `save_changes` would write the same columns for that
change (status, started_at, finished_at, worker; nothing else, no log line, no counter). Every
request it does not claim goes through the general path (load, `dag.start`, `save_changes`),
which drops duplicates and stale requests and logs the invalid ones, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CLAIM_SQL = text(
    """
WITH t AS (
  SELECT * FROM unnest(CAST(:names AS text[]), CAST(:attempts AS int[])) AS t(name, attempt)
), c AS (SELECT clock_timestamp() AS now),
u AS (
  UPDATE pipeline_step s SET status = 'running', started_at = c.now, finished_at = NULL,
    worker = :w
  FROM t, c
  WHERE s.execution_id = :e AND s.name = t.name AND s.status = 'ready'
    AND s.attempt = t.attempt AND (s.not_before IS NULL OR s.not_before <= c.now)
  RETURNING s.id, s.name, s.attempt
), a AS (
  INSERT INTO pipeline_step_attempt (step_id, attempt, status, worker, started_at)
  SELECT u.id, u.attempt, 'running', :w, c.now FROM u, c
  ON CONFLICT (step_id, attempt) DO NOTHING
)
SELECT id, name FROM u
"""
)


async def claim_ready(
    conn: AsyncConnection, execution_id: int, wanted: Sequence[tuple[str, int]], worker: str
) -> dict[str, int]:
    """Claim (step name, attempt) pairs that are READY at that attempt and due, for `worker`;
    returns {name: step id} of those claimed (the others are left exactly as they were)."""
    if not wanted:
        return {}
    result = await conn.execute(
        _CLAIM_SQL,
        {
            "e": execution_id,
            "names": [name for name, _ in wanted],
            "attempts": [attempt for _, attempt in wanted],
            "w": worker[:200],
        },
    )
    return {str(r[1]): int(r[0]) for r in result}
