"""Read queries behind the status API's cards, files and jump sessions (`streams.hub.api`):
set-based, one statement per page (see storage/status.py, the executions' half, for the paging
and the aggregates over the page only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.status import Row, all_rows, one_row

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
    "c.previous_detector_id, c.moved_at, "
    "fc.files_total, fc.files_imported, fc.files_failed, fc.files_pending"
)


async def list_cards(conn: AsyncConnection, limit: int, offset: int) -> list[Row]:
    """A page of cards, last seen first. Their safety comes from `storage.cards.card_safety`."""
    return await all_rows(
        conn,
        f"SELECT {_CARD_COLUMNS} FROM card c "
        f"{_FILE_COUNTS} ORDER BY c.last_seen_at DESC, c.id LIMIT :l OFFSET :o",
        {"l": limit, "o": offset},
    )


async def get_card(conn: AsyncConnection, card_id: str) -> Row | None:
    return await one_row(
        conn, f"SELECT {_CARD_COLUMNS} FROM card c {_FILE_COUNTS} WHERE c.id = :c", {"c": card_id}
    )


async def card_exists(conn: AsyncConnection, card_id: str) -> bool:
    return bool(await conn.scalar(text("SELECT 1 FROM card WHERE id = :c"), {"c": card_id}))


_FILE_COLUMNS = (
    "f.id, f.card_id, f.name, f.path, f.size, f.mtime_ms, f.kind, f.status, f.reason, "
    "f.stored_path, f.content_hash, f.duration_s, f.width, f.height, f.fps, f.codec, "
    "f.creation_time, f.probe_error, f.session_key, f.first_listed_at, f.imported_at, "
    "q.status AS qr_status, q.booking_id AS qr_booking_id, q.frame_s AS qr_frame_s"
)
_FILES = f"SELECT {_FILE_COLUMNS} FROM imported_file f LEFT JOIN qr_scan q ON q.file_id = f.id"


async def card_files(conn: AsyncConnection, card_id: str, limit: int, offset: int) -> list[Row]:
    return await all_rows(
        conn,
        f"{_FILES} WHERE f.card_id = :c ORDER BY f.name, f.id LIMIT :l OFFSET :o",
        {"c": card_id, "l": limit, "o": offset},
    )


async def get_file(conn: AsyncConnection, file_id: int) -> Row | None:
    return await one_row(conn, f"{_FILES} WHERE f.id = :f", {"f": file_id})


# --- jump sessions -----------------------------------------------------------------------------

_SESSION_COLUMNS = """
js.key, js.card_id, js.status, js.booking_id, js.passenger, js.product, js.qr_file_id,
js.execution_id, js.assigned_by, js.created_at, js.updated_at,
cardinality(js.file_ids) AS files, e.status AS execution_status,
CASE WHEN jsonb_typeof(js.warnings) = 'array' THEN js.warnings ELSE '[]'::jsonb END AS warnings,
js.review_reason, js.media_purged_at AS purged_at, c.label AS card_label,
coalesce(d.name, c.detector_id) AS station, cap.captured_at
"""
# issue 17: the card's label and station, and when the jump's first clip was recorded
_SESSIONS_FROM = """FROM jump_session js LEFT JOIN pipeline_execution e ON e.id = js.execution_id
LEFT JOIN card c ON c.id = js.card_id LEFT JOIN detector d ON d.id = c.detector_id
LEFT JOIN LATERAL (
  SELECT min(coalesce(f.creation_time, to_timestamp(f.mtime_ms / 1000.0))) AS captured_at
  FROM imported_file f WHERE f.session_key = js.key
) cap ON true"""


def like_pattern(q: str) -> str:
    """``q`` as a case-insensitive substring pattern for ILIKE (its % _ \\ taken literally)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_sessions(
    conn: AsyncConnection,
    status: str | None,
    card: str | None,
    limit: int,
    offset: int,
    q: str | None = None,
) -> list[Row]:
    """A page of jumps, newest first; ``q`` matches passenger, booking or key (substring)."""
    clauses: list[str] = []
    params: dict[str, object] = {"l": limit, "o": offset}
    if q:
        clauses.append("(js.passenger ILIKE :q OR js.booking_id ILIKE :q OR js.key ILIKE :q)")
        params["q"] = like_pattern(q)
    if status is not None:
        clauses.append("js.status = :s")
        params["s"] = status
    if card is not None:
        clauses.append("js.card_id = :c")
        params["c"] = card
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return await all_rows(
        conn,
        f"SELECT {_SESSION_COLUMNS} {_SESSIONS_FROM}{where} "
        "ORDER BY js.created_at DESC, js.key LIMIT :l OFFSET :o",
        params,
    )


async def get_session(conn: AsyncConnection, key: str) -> Row | None:
    return await one_row(
        conn,
        f"SELECT {_SESSION_COLUMNS}, js.file_ids {_SESSIONS_FROM} WHERE js.key = :k",
        {"k": key},
    )


async def recent_bookings(conn: AsyncConnection, q: str | None, limit: int) -> list[Row]:
    """Bookings jumps carry, most recently seen first, with the passenger of each (for the
    review form's booking lookup); ``q`` matches booking or passenger (substring)."""
    where = "js.booking_id IS NOT NULL AND js.booking_id <> ''"
    params: dict[str, object] = {"l": limit}
    if q:
        where += " AND (js.booking_id ILIKE :q OR js.passenger ILIKE :q)"
        params["q"] = like_pattern(q)
    return await all_rows(
        conn,
        "SELECT js.booking_id, max(js.passenger) AS passenger, max(js.product) AS product, "
        "count(*) AS jumps, max(js.updated_at) AS last_seen_at "
        f"FROM jump_session js WHERE {where} GROUP BY js.booking_id "
        "ORDER BY max(js.updated_at) DESC, js.booking_id LIMIT :l",
        params,
    )


_INT = re.compile(r"^[0-9]{1,18}$")


async def session_files(conn: AsyncConnection, key: str, file_ids: Sequence[str]) -> list[Row]:
    """The session's footage and QR clip(s): by `file_ids` and by `session_key`, capture order."""
    ids = [int(i) for i in file_ids if _INT.match(i)]
    return await all_rows(
        conn,
        f"{_FILES} WHERE f.id = ANY(CAST(:ids AS bigint[])) OR f.session_key = :k "
        "ORDER BY coalesce(f.creation_time, to_timestamp(f.mtime_ms / 1000.0)), f.name",
        {"ids": ids, "k": key},
    )


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
    return await all_rows(
        conn,
        "SELECT id, label, last_seen_at FROM card ORDER BY last_seen_at DESC, id LIMIT :l",
        {"l": limit},
    )
