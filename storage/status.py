"""Read queries behind the status API (`streams.hub.api`): set-based, one statement per page.

Lists are paged by keyset (executions, dead letters: `id < cursor`, newest first) or by
limit/offset (cards, sessions, files). Aggregates a list row needs (step counts, overall
progress, file counts) come from LATERAL subqueries over the page only, so a page costs the same
with 10 or 10 million rows. Rows come back as plain dicts; the API's pydantic models validate
and shape them.

Indexes used: `uq_step_execution_name` (execution_id, name) for the per-execution step
aggregates and the detail; the primary key of `pipeline_execution` for the keyset order and
`ix_execution_status_id` (migration 0002) for a status-filtered page; `ix_imported_file_session`
for a session's footage; `ix_session_status_created` (0002) for the sessions by status. Cards,
files and sessions: storage/status_cards.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import deps

logger = logging.getLogger(__name__)

Row = dict[str, object]
#: Step output values with these endings name a media file (videos, posters, copied clips).
MEDIA_SUFFIXES = (".mp4", ".mov", ".jpg", ".jpeg")


async def one_row(conn: AsyncConnection, sql: str, params: dict[str, object]) -> Row | None:
    """The first row ``sql`` returns, as a dict; None when it returns none."""
    row = (await conn.execute(text(sql), params)).mappings().first()
    return dict(row) if row is not None else None


async def all_rows(conn: AsyncConnection, sql: str, params: dict[str, object]) -> list[Row]:
    """Every row ``sql`` returns, as dicts."""
    return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


@dataclass(frozen=True)
class ExecutionFilter:
    """Filters of the executions list (all optional; combined with AND)."""

    status: str | None = None
    card: str | None = None
    booking: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    """Where a page starts: after `cursor` (an id, keyset) or at `offset`."""

    limit: int = 50
    cursor: int | None = None
    offset: int = 0


# --- executions --------------------------------------------------------------------------------

_STEP_AGGREGATE = """
LEFT JOIN LATERAL (
  SELECT count(*) AS steps_total,
         count(*) FILTER (WHERE st.status IN ('succeeded', 'skipped')) AS steps_done,
         count(*) FILTER (WHERE st.status = 'failed') AS steps_failed,
         count(*) FILTER (WHERE st.status = 'running') AS steps_running,
         coalesce(avg(CASE WHEN st.status IN ('succeeded', 'skipped') THEN 1.0
                           WHEN st.status = 'running' THEN least(greatest(
                                coalesce(st.progress, 0), 0), 1)
                           ELSE 0 END), 0) AS progress
  FROM pipeline_step st WHERE st.execution_id = e.id
) agg ON true
"""

_EXECUTION_COLUMNS = """
e.id, e.key, e.pipeline, e.subject_type, e.subject_id, e.status, e.created_at, e.updated_at,
e.finished_at,
CASE WHEN e.subject_type = 'card' THEN e.subject_id ELSE js.card_id END AS card_id,
coalesce(js.booking_id, e.context ->> 'booking_id') AS booking_id,
coalesce(js.passenger, e.context ->> 'passenger') AS passenger,
js.capture_start AS capture_start,
agg.steps_total, agg.steps_done, agg.steps_failed, agg.steps_running,
agg.progress::float8 AS progress,
CASE WHEN jsonb_typeof(js.warnings) = 'array' THEN js.warnings ELSE '[]'::jsonb END AS warnings,
coalesce(js.review_reason, '') AS review_reason
"""

_SESSION_JOIN = "LEFT JOIN jump_session js ON e.subject_type = 'session' AND js.key = e.subject_id"


def _execution_where(f: ExecutionFilter, page: Page | None) -> tuple[str, dict[str, object]]:
    clauses: list[str] = []
    params: dict[str, object] = {}
    if f.status is not None:
        clauses.append("e.status = :status")
        params["status"] = f.status
    if f.card is not None:
        clauses.append(
            "((e.subject_type = 'card' AND e.subject_id = :card) OR js.card_id = :card "
            "OR e.context ->> 'card_id' = :card)"
        )
        params["card"] = f.card
    if f.booking is not None:
        clauses.append("(js.booking_id = :booking OR e.context ->> 'booking_id' = :booking)")
        params["booking"] = f.booking
    if f.since is not None:
        clauses.append("e.created_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        clauses.append("e.created_at < :until")
        params["until"] = f.until
    if page is not None and page.cursor is not None:
        clauses.append("e.id < :cursor")
        params["cursor"] = page.cursor
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def list_executions(
    conn: AsyncConnection, f: ExecutionFilter, page: Page
) -> tuple[list[Row], int | None]:
    """A page of executions, newest first, and the cursor of the next page (None: last page)."""
    where, params = _execution_where(f, page)
    params["limit"] = page.limit + 1
    params["offset"] = page.offset if page.cursor is None else 0
    # The page is chosen first (cheap: index order on id), the aggregates run on it only.
    sql = (
        f"WITH page AS (SELECT e.id FROM pipeline_execution e {_SESSION_JOIN}{where} "
        "ORDER BY e.id DESC LIMIT :limit OFFSET :offset) "
        f"SELECT {_EXECUTION_COLUMNS} FROM page JOIN pipeline_execution e ON e.id = page.id "
        f"{_SESSION_JOIN} {_STEP_AGGREGATE} ORDER BY e.id DESC"
    )
    rows = [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (int(rows[-1]["id"]) if more and rows else None)  # type: ignore[call-overload]


async def get_execution(conn: AsyncConnection, execution_id: int) -> Row | None:
    sql = (
        f"SELECT {_EXECUTION_COLUMNS}, e.context FROM pipeline_execution e {_SESSION_JOIN} "
        f"{_STEP_AGGREGATE} WHERE e.id = :e"
    )
    return await one_row(conn, sql, {"e": execution_id})


async def execution_steps(conn: AsyncConnection, execution_id: int) -> list[Row]:
    """Every step of an execution with its attempts (one query, attempts as a JSON array)."""
    return await all_rows(
        conn,
        "SELECT s.id, s.name, s.kind, s.status, s.attempt, s.max_attempts, s.depends_on, "
        "s.spawns, s.spawned_by, s.progress, s.error, s.worker, s.waiting_for, s.output, "
        "s.created_at, s.ready_at, s.started_at, s.finished_at, "
        "coalesce((SELECT json_agg(json_build_object('attempt', a.attempt, "
        "  'status', a.status, 'worker', a.worker, 'error', a.error, "
        "  'started_at', a.started_at, 'finished_at', a.finished_at) ORDER BY a.attempt) "
        "  FROM pipeline_step_attempt a WHERE a.step_id = s.id), '[]') AS attempts "
        "FROM pipeline_step s WHERE s.execution_id = :e ORDER BY s.id",
        {"e": execution_id},
    )


def dag_edges(
    steps: Iterable[tuple[str, Sequence[str]]], spawns: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str]]:
    """(from, to) edges of a DAG whose dependencies may be patterns (`probe:*`): what each step
    waits for, by the pipeline core's own rule (storage/deps.py), spawners included."""
    return deps.edges(steps, spawns)


async def execution_outputs(conn: AsyncConnection, execution_id: int) -> list[Row]:
    """Outputs of the succeeded steps of an execution (where a render names its video)."""
    return await all_rows(
        conn,
        "SELECT name, output FROM pipeline_step WHERE execution_id = :e "
        "AND status = 'succeeded' AND output IS NOT NULL ORDER BY id",
        {"e": execution_id},
    )


async def step_id(conn: AsyncConnection, execution_id: int, name: str) -> int | None:
    found = await conn.scalar(
        text("SELECT id FROM pipeline_step WHERE execution_id = :e AND name = :n"),
        {"e": execution_id, "n": name},
    )
    return int(found) if found is not None else None


async def step_logs(
    conn: AsyncConnection, step: int, attempt: int | None, limit: int, after: int
) -> list[Row]:
    """Log lines of a step (one attempt or all), oldest first, after log id `after`."""
    sql = (
        "SELECT id, attempt, level, message, actor, at FROM pipeline_step_log "
        "WHERE step_id = :s AND id > :after"
    )
    params: dict[str, object] = {"s": step, "after": after, "limit": limit}
    if attempt is not None:
        sql += " AND attempt = :a"
        params["a"] = attempt
    sql += " ORDER BY id LIMIT :limit"
    return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


# --- detectors, counters, dead letters ---------------------------------------------------------


async def list_detectors(conn: AsyncConnection) -> list[Row]:
    rows = await conn.execute(
        text(
            "SELECT id, name, revoked, created_at, last_seen_at, current_card_id FROM detector "
            "ORDER BY id"
        )
    )
    return [dict(r) for r in rows.mappings()]


async def counters(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(text("SELECT name, value FROM counter"))
    values = {str(n): int(v) for n, v in rows}
    values["dead_letters"] = int(await conn.scalar(text("SELECT count(*) FROM dead_letter")) or 0)
    return values


async def list_dead_letters(conn: AsyncConnection, page: Page) -> tuple[list[Row], int | None]:
    params: dict[str, object] = {"l": page.limit + 1}
    where = ""
    if page.cursor is not None:
        where = " WHERE id < :c"
        params["c"] = page.cursor
    rows = [
        dict(r)
        for r in (
            await conn.execute(
                text(
                    f"SELECT id, topic, key, payload, error, at FROM dead_letter{where} "
                    "ORDER BY id DESC LIMIT :l"
                ),
                params,
            )
        ).mappings()
    ]
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (int(rows[-1]["id"]) if more and rows else None)  # type: ignore[call-overload]


def output_files(outputs: Iterable[Mapping[str, object]]) -> list[tuple[str, str]]:
    """(key, path) of step output values that name a stored video, poster or copied clip, in
    step order: a render's staged `video`, a publish's published one, a copy's `stored_path`."""
    found: list[tuple[str, str]] = []
    for row in outputs:
        out = row.get("output")
        if not isinstance(out, dict):
            continue
        for key, value in out.items():
            if isinstance(value, str) and value.lower().endswith(MEDIA_SUFFIXES):
                found.append((str(key), value))
    return found
