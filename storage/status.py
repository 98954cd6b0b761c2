"""Read queries behind the status API (`streams.hub.api`): set-based, one statement per page.

Lists are paged by keyset (executions, dead letters: `id < cursor`, newest first) or by
limit/offset (cards, sessions, files). Aggregates a list row needs (step counts, overall
progress, file counts) come from LATERAL subqueries over the page only, so a page costs the same
with 10 or 10 million rows. Rows come back as plain dicts; the API's pydantic models validate
and shape them.

Indexes used: `uq_step_execution_name` (execution_id, name) for the per-execution step
aggregates and the detail; the primary key of `pipeline_execution` for the keyset order;
`ix_imported_file_session` for a session's footage. Not there yet (suggested migration):
`pipeline_execution (status, id DESC)` for a status-filtered keyset page, `imported_file
(card_id, name)` for a card's file list, `jump_session (status, created_at)`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger(__name__)

Row = dict[str, object]


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
    row = (await conn.execute(text(sql), {"e": execution_id})).mappings().first()
    return dict(row) if row is not None else None


async def execution_steps(conn: AsyncConnection, execution_id: int) -> list[Row]:
    """Every step of an execution with its attempts (one query, attempts as a JSON array)."""
    rows = await conn.execute(
        text(
            "SELECT s.id, s.name, s.kind, s.status, s.attempt, s.max_attempts, s.depends_on, "
            "s.spawns, s.spawned_by, s.progress, s.error, s.worker, s.waiting_for, s.output, "
            "s.created_at, s.ready_at, s.started_at, s.finished_at, "
            "coalesce((SELECT json_agg(json_build_object('attempt', a.attempt, "
            "  'status', a.status, 'worker', a.worker, 'error', a.error, "
            "  'started_at', a.started_at, 'finished_at', a.finished_at) ORDER BY a.attempt) "
            "  FROM pipeline_step_attempt a WHERE a.step_id = s.id), '[]') AS attempts "
            "FROM pipeline_step s WHERE s.execution_id = :e ORDER BY s.id"
        ),
        {"e": execution_id},
    )
    return [dict(r) for r in rows.mappings()]


def dag_edges(steps: Iterable[tuple[str, Sequence[str]]]) -> list[tuple[str, str]]:
    """(from, to) edges of a DAG whose dependencies may be patterns (`probe:*`).

    A pattern names every step whose name starts with the part before the `*`; a leading `?`
    (a settled dependency, agents/pipeline/dag.py) draws the same edge.
    """
    nodes = list(steps)
    names = [name for name, _ in nodes]
    edges: list[tuple[str, str]] = []
    for name, raw in nodes:
        for dep in (d.removeprefix("?") for d in raw):
            if dep.endswith("*"):
                edges.extend((n, name) for n in names if n != name and n.startswith(dep[:-1]))
            elif dep in names:
                edges.append((dep, name))
    return sorted(set(edges))


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


# --- cards and files ---------------------------------------------------------------------------

_FILE_COUNTS = """
LEFT JOIN LATERAL (
  SELECT count(*) AS files_total,
         count(*) FILTER (WHERE f.status = 'imported') AS files_imported,
         count(*) FILTER (WHERE f.status = 'failed') AS files_failed,
         count(*) FILTER (WHERE f.status IN ('listed', 'requested', 'copying')) AS files_pending
  FROM imported_file f WHERE f.card_id = c.id
) fc ON true
"""


_CARD_COLUMNS = (
    "c.id, c.label, c.detector_id, c.present, c.first_seen_at, c.last_seen_at, "
    "fc.files_total, fc.files_imported, fc.files_failed, fc.files_pending"
)


async def list_cards(conn: AsyncConnection, limit: int, offset: int) -> list[Row]:
    """A page of cards, last seen first. Their safety comes from `storage.cards.card_safety`."""
    rows = await conn.execute(
        text(
            f"SELECT {_CARD_COLUMNS} FROM card c "
            f"{_FILE_COUNTS} ORDER BY c.last_seen_at DESC, c.id LIMIT :l OFFSET :o"
        ),
        {"l": limit, "o": offset},
    )
    return [dict(r) for r in rows.mappings()]


async def get_card(conn: AsyncConnection, card_id: str) -> Row | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_CARD_COLUMNS} FROM card c {_FILE_COUNTS} WHERE c.id = :c"),
                {"c": card_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def card_exists(conn: AsyncConnection, card_id: str) -> bool:
    return bool(await conn.scalar(text("SELECT 1 FROM card WHERE id = :c"), {"c": card_id}))


_FILE_COLUMNS = (
    "f.id, f.card_id, f.name, f.path, f.size, f.mtime_ms, f.kind, f.status, f.reason, "
    "f.stored_path, f.content_hash, f.duration_s, f.width, f.height, f.fps, f.codec, "
    "f.creation_time, f.probe_error, f.session_key, f.first_listed_at, f.imported_at, "
    "q.status AS qr_status, q.booking_id AS qr_booking_id, q.frame_s AS qr_frame_s"
)


async def card_files(conn: AsyncConnection, card_id: str, limit: int, offset: int) -> list[Row]:
    rows = await conn.execute(
        text(
            f"SELECT {_FILE_COLUMNS} FROM imported_file f "
            "LEFT JOIN qr_scan q ON q.file_id = f.id WHERE f.card_id = :c "
            "ORDER BY f.name, f.id LIMIT :l OFFSET :o"
        ),
        {"c": card_id, "l": limit, "o": offset},
    )
    return [dict(r) for r in rows.mappings()]


async def get_file(conn: AsyncConnection, file_id: int) -> Row | None:
    row = (
        (
            await conn.execute(
                text(
                    f"SELECT {_FILE_COLUMNS} FROM imported_file f "
                    "LEFT JOIN qr_scan q ON q.file_id = f.id WHERE f.id = :f"
                ),
                {"f": file_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


# --- jump sessions -----------------------------------------------------------------------------

_SESSION_COLUMNS = """
js.key, js.card_id, js.status, js.booking_id, js.passenger, js.product, js.qr_file_id,
js.execution_id, js.assigned_by, js.created_at, js.updated_at,
cardinality(js.file_ids) AS files, e.status AS execution_status,
CASE WHEN jsonb_typeof(js.warnings) = 'array' THEN js.warnings ELSE '[]'::jsonb END AS warnings,
js.review_reason
"""


async def list_sessions(
    conn: AsyncConnection, status: str | None, card: str | None, limit: int, offset: int
) -> list[Row]:
    clauses: list[str] = []
    params: dict[str, object] = {"l": limit, "o": offset}
    if status is not None:
        clauses.append("js.status = :s")
        params["s"] = status
    if card is not None:
        clauses.append("js.card_id = :c")
        params["c"] = card
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = await conn.execute(
        text(
            f"SELECT {_SESSION_COLUMNS} FROM jump_session js "
            f"LEFT JOIN pipeline_execution e ON e.id = js.execution_id{where} "
            "ORDER BY js.created_at DESC, js.key LIMIT :l OFFSET :o"
        ),
        params,
    )
    return [dict(r) for r in rows.mappings()]


async def get_session(conn: AsyncConnection, key: str) -> Row | None:
    row = (
        (
            await conn.execute(
                text(
                    f"SELECT {_SESSION_COLUMNS}, js.file_ids FROM jump_session js "
                    "LEFT JOIN pipeline_execution e ON e.id = js.execution_id WHERE js.key = :k"
                ),
                {"k": key},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


_INT = re.compile(r"^[0-9]{1,18}$")


async def session_files(conn: AsyncConnection, key: str, file_ids: Sequence[str]) -> list[Row]:
    """The session's footage and QR clip(s): by `file_ids` and by `session_key`, capture order."""
    ids = [int(i) for i in file_ids if _INT.match(i)]
    rows = await conn.execute(
        text(
            f"SELECT {_FILE_COLUMNS} FROM imported_file f "
            "LEFT JOIN qr_scan q ON q.file_id = f.id "
            "WHERE f.id = ANY(CAST(:ids AS bigint[])) OR f.session_key = :k "
            "ORDER BY coalesce(f.creation_time, to_timestamp(f.mtime_ms / 1000.0)), f.name"
        ),
        {"ids": ids, "k": key},
    )
    return [dict(r) for r in rows.mappings()]


_ATTENTION_SESSIONS = """
WITH review AS (
  SELECT js.key, js.card_id, js.status, js.passenger, js.booking_id, js.execution_id,
         js.created_at, js.review_reason AS message, 0::bigint AS n
  FROM jump_session js WHERE js.status IN ('needs_review', 'unassigned')
  ORDER BY js.created_at DESC, js.key LIMIT :l
), warned AS (
  SELECT js.key, js.card_id, js.status, js.passenger, js.booking_id, js.execution_id,
         js.created_at, js.warnings
  FROM jump_session js
  WHERE jsonb_typeof(js.warnings) = 'array' AND js.warnings <> '[]'::jsonb
  ORDER BY js.created_at DESC, js.key LIMIT :l
), warning AS (
  SELECT w.key, w.card_id, w.status, w.passenger, w.booking_id, w.execution_id, w.created_at,
         x.value AS message, x.n
  FROM warned w CROSS JOIN LATERAL jsonb_array_elements_text(w.warnings) WITH ORDINALITY x(value, n)
  ORDER BY w.created_at DESC, w.key, x.n LIMIT :l
)
SELECT 'review'::text AS kind, * FROM review
UNION ALL
SELECT 'warning'::text AS kind, * FROM warning
ORDER BY kind, created_at DESC, key, n
"""


async def attention_sessions(conn: AsyncConnection, limit: int) -> list[Row]:
    """Sessions waiting for a person (kind `review`, with the reason as `message`) and one row
    per session warning (kind `warning`): each kind newest first, at most `limit` of each.

    One statement. The review part walks `ix_session_status_created`; the warning part scans
    the sessions with warnings (suggested: a partial index on created_at WHERE warnings <> '[]').
    """
    rows = await conn.execute(text(_ATTENTION_SESSIONS), {"l": limit})
    return [dict(r) for r in rows.mappings()]


async def recent_cards(conn: AsyncConnection, limit: int) -> list[Row]:
    """The cards seen last (id, label, last_seen_at): those whose warnings an operator reads."""
    rows = await conn.execute(
        text("SELECT id, label, last_seen_at FROM card ORDER BY last_seen_at DESC, id LIMIT :l"),
        {"l": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def execution_outputs(conn: AsyncConnection, execution_id: int) -> list[Row]:
    """Outputs of the succeeded steps of an execution (where a render names its video)."""
    rows = await conn.execute(
        text(
            "SELECT name, output FROM pipeline_step WHERE execution_id = :e "
            "AND status = 'succeeded' AND output IS NOT NULL ORDER BY id"
        ),
        {"e": execution_id},
    )
    return [dict(r) for r in rows.mappings()]


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


def output_paths(outputs: Iterable[Mapping[str, object]]) -> list[str]:
    """String values of step outputs that look like a finished video or its poster."""
    found: list[str] = []
    for row in outputs:
        out = row.get("output")
        if not isinstance(out, dict):
            continue
        for value in out.values():
            if isinstance(value, str) and value.lower().endswith((".mp4", ".jpg", ".jpeg")):
                found.append(value)
    return found
