"""Media facts, QR scans and jump sessions of imported files (what the card pipelines write).

Every write is an upsert guarded by its natural key, so a redelivered step changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.pipeline import UNFINISHED_EXECUTIONS


@dataclass(frozen=True)
class FileRow:
    id: int
    card_id: str
    name: str
    path: str
    size: int
    mtime_ms: int
    kind: str
    status: str
    reason: str
    stored_path: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool | None
    creation_time: datetime | None
    session_key: str | None
    probe_error: str = ""  # why the clip could not be read ('' when it could, or not probed yet)
    content_hash: str | None = None

    @property
    def capture_time(self) -> datetime:
        """Container creation_time, else the card's mtime (FAT has no zone: taken as UTC)."""
        return self.creation_time or datetime.fromtimestamp(self.mtime_ms / 1000, UTC)


_FILE_COLUMNS = (
    "id, card_id, name, path, size, mtime_ms, kind, status, reason, stored_path, duration_s, "
    "width, height, fps, has_audio, creation_time, session_key, probe_error, content_hash"
)


async def load_files(conn: AsyncConnection, ids: Sequence[int]) -> list[FileRow]:
    rows = await conn.execute(
        text(f"SELECT {_FILE_COLUMNS} FROM imported_file WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": list(ids)},
    )
    return [FileRow(*r) for r in rows]


@dataclass(frozen=True)
class ProbeFacts:
    """What probing a clip found, as stored on `imported_file`."""

    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    codec: str | None
    has_audio: bool
    creation_time: datetime | None


@dataclass(frozen=True)
class QrScan:
    """What the QR search of one clip found, as stored in `qr_scan`."""

    status: str
    payload: str | None
    booking_id: str | None
    passenger: str | None
    product: str | None
    frame_s: float | None
    decoder: str | None
    reason: str
    elapsed_ms: float
    email: str | None = None  # issue 16
    email_warning: str = ""


async def save_probe(conn: AsyncConnection, file_id: int, info: ProbeFacts) -> None:
    await conn.execute(
        text(
            "UPDATE imported_file SET duration_s = :d, width = :w, height = :h, fps = :f, "
            "codec = :c, has_audio = :a, creation_time = :t, probe_error = '' WHERE id = :id"
        ),
        {
            "id": file_id,
            "d": info.duration_s,
            "w": info.width,
            "h": info.height,
            "f": info.fps,
            "c": info.codec,
            "a": info.has_audio,
            "t": info.creation_time,
        },
    )


async def save_probe_error(conn: AsyncConnection, file_id: int, reason: str) -> None:
    """The clip could not be read: it fails only itself (grouping and render go on without it)."""
    await conn.execute(
        text("UPDATE imported_file SET probe_error = :r WHERE id = :id"),
        {"id": file_id, "r": reason[:2000] or "unreadable"},
    )


async def save_qr(conn: AsyncConnection, file_id: int, result: QrScan) -> None:
    await conn.execute(
        text(
            "INSERT INTO qr_scan (file_id, status, payload, booking_id, passenger, product, "
            "frame_s, decoder, reason, elapsed_ms, email, email_warning) VALUES (:id, :s, :p, :b, "
            ":n, :pr, :fs, :d, :r, :ms, :em, :ew) ON CONFLICT (file_id) DO UPDATE SET "
            "status = EXCLUDED.status, "
            "payload = EXCLUDED.payload, booking_id = EXCLUDED.booking_id, "
            "passenger = EXCLUDED.passenger, product = EXCLUDED.product, "
            "frame_s = EXCLUDED.frame_s, decoder = EXCLUDED.decoder, reason = EXCLUDED.reason, "
            "elapsed_ms = EXCLUDED.elapsed_ms, email = EXCLUDED.email, "
            "email_warning = EXCLUDED.email_warning, scanned_at = now()"
        ),
        {
            "id": file_id,
            "s": str(result.status),
            "p": (result.payload or "")[:4000] or None,
            "b": result.booking_id,
            "n": result.passenger,
            "pr": result.product,
            "fs": result.frame_s,
            "d": result.decoder,
            "r": result.reason[:2000],
            "ms": result.elapsed_ms,
            "em": result.email,
            "ew": result.email_warning[:2000],
        },
    )


@dataclass(frozen=True)
class QrRow:
    file_id: int
    status: str
    booking_id: str | None
    passenger: str | None
    product: str | None
    email: str | None = None  # issue 16
    email_warning: str = ""


async def load_qr(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, QrRow]:
    rows = await conn.execute(
        text(
            "SELECT file_id, status, booking_id, passenger, product, email, email_warning "
            "FROM qr_scan "
            "WHERE file_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": list(ids)},
    )
    return {int(r[0]): QrRow(int(r[0]), *r[1:]) for r in rows}


@dataclass(frozen=True)
class SessionRow:
    key: str
    card_id: str
    status: str
    booking_id: str | None
    passenger: str | None
    product: str | None
    qr_file_id: int | None
    file_ids: tuple[int, ...]
    execution_id: int | None
    # every QR clip of the session (a re-filmed ticket: two); all are claimed by it
    qr_file_ids: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    review_reason: str = ""
    output_name: str | None = None
    capture_start: datetime | None = None
    email: str | None = None  # issue 16: where the passenger link is sent


async def upsert_session(conn: AsyncConnection, s: SessionRow) -> bool:
    """Record a session once (True when new) and claim its files for it."""
    inserted = await conn.execute(
        text(
            "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, product, "
            "qr_file_id, file_ids, warnings, review_reason, capture_start, email) "
            "VALUES (:k, :c, :s, :b, :p, :pr, :q, CAST(:f AS text[]), CAST(:w AS jsonb), :rr, "
            ":cs, :em) ON CONFLICT (key) DO NOTHING"
        ),
        {
            "k": s.key,
            "c": s.card_id,
            "s": s.status,
            "b": s.booking_id,
            "p": s.passenger,
            "pr": s.product,
            "q": s.qr_file_id,
            "f": [str(i) for i in s.file_ids],
            "w": json.dumps(list(s.warnings)),
            "rr": s.review_reason,
            "cs": s.capture_start,
            "em": s.email,
        },
    )
    await conn.execute(
        text(
            "UPDATE imported_file SET session_key = :k "
            "WHERE id = ANY(CAST(:ids AS bigint[])) AND session_key IS NULL"
        ),
        {"k": s.key, "ids": sorted({*s.file_ids, *s.qr_file_ids, *_opt(s.qr_file_id)})},
    )
    return bool(inserted.rowcount)


async def lock_card_grouping(conn: AsyncConnection, card_id: str) -> None:
    """Serialize the groupings of one card until the transaction ends (issue 18: a card's
    partial groupings run side by side; each must see the sessions the others recorded)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('skyreel-group:' || :c))"), {"c": card_id}
    )


async def unstarted_sessions(
    conn: AsyncConnection, card_id: str, file_ids: Sequence[int]
) -> list[str]:
    """Keys of the card's sessions with footage among `file_ids` that were recorded but never
    got their jump execution (the grouping stopped between the two)."""
    rows = await conn.execute(
        text(
            "SELECT key FROM jump_session WHERE card_id = :c AND execution_id IS NULL "
            "AND cardinality(file_ids) > 0 AND file_ids && CAST(:ids AS text[]) ORDER BY key"
        ),
        {"c": card_id, "ids": [str(i) for i in file_ids]},
    )
    return [str(r[0]) for r in rows]


def _opt(value: int | None) -> list[int]:
    return [] if value is None else [value]


async def add_session_warning(conn: AsyncConnection, key: str, warning: str) -> bool:
    """Append a warning to a session once (True when it was new); redelivery adds nothing."""
    result = await conn.execute(
        text(
            "UPDATE jump_session SET warnings = warnings || CAST(:w AS jsonb), updated_at = now() "
            "WHERE key = :k AND NOT warnings @> CAST(:w AS jsonb)"
        ),
        {"k": key, "w": json.dumps([warning])},
    )
    return bool(result.rowcount)


async def set_session_execution(conn: AsyncConnection, key: str, execution_id: int) -> None:
    await conn.execute(
        text("UPDATE jump_session SET execution_id = :e, updated_at = now() WHERE key = :k"),
        {"k": key, "e": execution_id},
    )


async def load_session(conn: AsyncConnection, key: str) -> SessionRow | None:
    row = (
        await conn.execute(
            text(
                "SELECT s.key, s.card_id, s.status, s.booking_id, s.passenger, s.product, "
                "s.qr_file_id, s.file_ids, s.execution_id, s.warnings, s.review_reason, "
                "s.output_name, s.capture_start, COALESCE((SELECT array_agg(f.id ORDER BY f.id) "
                "  FROM imported_file f WHERE f.session_key = s.key AND f.kind = 'qr_candidate' "
                "  AND NOT f.id = ANY(CAST(s.file_ids AS bigint[]))), '{}'), s.email "
                "FROM jump_session s WHERE s.key = :k"
            ),
            {"k": key},
        )
    ).first()
    if row is None:
        return None
    return SessionRow(
        key=row[0],
        card_id=row[1],
        status=row[2],
        booking_id=row[3],
        passenger=row[4],
        product=row[5],
        qr_file_id=row[6],
        file_ids=tuple(int(i) for i in row[7] or []),
        execution_id=row[8],
        qr_file_ids=tuple(int(i) for i in row[13] or []),
        warnings=tuple(str(w) for w in row[9] or []),
        review_reason=row[10] or "",
        output_name=row[11],
        capture_start=row[12],
        email=row[14],
    )


async def claim_output_name(conn: AsyncConnection, key: str, name: str) -> str | None:
    """The session's output name: `name` if it had none yet, else the one stored first.

    Stored once so later renders keep it even when the facts it was made from change. None when
    there is no such session.
    """
    return await conn.scalar(
        text(
            "UPDATE jump_session SET output_name = COALESCE(output_name, :n), updated_at = now() "
            "WHERE key = :k RETURNING output_name"
        ),
        {"k": key, "n": name},
    )


# --- reconciliation: what the ledger says that a lost message would have said ----------------


@dataclass(frozen=True)
class LandedCopy:
    """A copy step still running (waiting) or failed although its file is imported."""

    execution_id: int
    attempt: int
    status: str  # running | failed
    file_id: int
    qr: bool
    stored_path: str | None
    group: bool = False  # a card import's QR candidate: its landing also spawns `group:<file>`


async def copy_steps_of(conn: AsyncConnection, file_id: int) -> list[LandedCopy]:
    """The running (waiting) or failed `copy:<file>` steps of one file, with its stored path."""
    rows = (
        await conn.execute(
            text(
                "SELECT execution_id, attempt, status, input FROM pipeline_step "
                "WHERE name = :n AND status IN ('running', 'failed')"
            ),
            {"n": f"copy:{file_id}"},
        )
    ).all()
    stored = await conn.scalar(
        text("SELECT stored_path FROM imported_file WHERE id = :id"), {"id": file_id}
    )
    return [
        LandedCopy(
            int(e),
            int(a),
            str(st),
            file_id,
            bool((inp or {}).get("qr")),
            stored,
            bool((inp or {}).get("group")),
        )
        for e, a, st, inp in rows
    ]


async def detector_of(conn: AsyncConnection, file_id: int) -> str | None:
    """The detector whose card holds the file (None when unknown)."""
    detector = await conn.scalar(
        text("SELECT detector_id FROM imported_file WHERE id = :id"), {"id": file_id}
    )
    return str(detector) if detector else None


async def landed_copy_steps(conn: AsyncConnection, grace_s: float) -> list[LandedCopy]:
    """Every copy step whose file was imported more than `grace_s` ago but which was never
    told (its landing message was lost): one query for the whole ledger."""
    rows = await conn.execute(
        text(
            "SELECT s.execution_id, s.attempt, s.status, f.id AS file_id, "
            "COALESCE((s.input->>'qr')::boolean, false) AS qr, f.stored_path, "
            "COALESCE((s.input->>'group')::boolean, false) AS grp "
            "FROM pipeline_step s JOIN imported_file f "
            "  ON s.name ~ '^copy:[0-9]+$' AND f.id = CAST(substr(s.name, 6) AS bigint) "
            f"WHERE s.execution_id IN ({UNFINISHED_EXECUTIONS}) "
            "AND s.kind = 'copy' AND s.status IN ('running', 'failed') "
            "AND f.status = 'imported' "
            "AND f.imported_at < now() - make_interval(secs => :g) "
            "ORDER BY s.execution_id, f.id"
        ),
        {"g": grace_s},
    )
    return [
        LandedCopy(
            int(r.execution_id),
            int(r.attempt),
            str(r.status),
            int(r.file_id),
            bool(r.qr),
            r.stored_path,
            bool(r.grp),
        )
        for r in rows
    ]


async def undecoded_candidates(conn: AsyncConnection) -> list[tuple[int, int]]:
    """(import execution, file) of QR candidates that were imported and whose copy step
    succeeded, but that have no QR scan and no `qr:<file>` step in that execution."""
    rows = await conn.execute(
        text(
            "SELECT c.execution_id, f.id FROM imported_file f "
            "JOIN pipeline_step c ON c.kind = 'copy' AND c.status = 'succeeded' "
            "  AND c.name = 'copy:' || f.id::text "
            "  AND COALESCE((c.input->>'qr')::boolean, false) "
            "WHERE f.kind = 'qr_candidate' AND f.status = 'imported' "
            "AND NOT EXISTS (SELECT 1 FROM qr_scan q WHERE q.file_id = f.id) "
            "AND NOT EXISTS (SELECT 1 FROM pipeline_step q WHERE q.execution_id = c.execution_id "
            "  AND q.name = 'qr:' || f.id::text) "
            "ORDER BY 1, 2"
        )
    )
    return [(int(r[0]), int(r[1])) for r in rows]


async def stale_groups(conn: AsyncConnection) -> list[int]:
    """Import executions whose `group` succeeded before one of its listed files (not a proxy,
    not in any session yet) was imported or decoded: their grouping is to be redone."""
    rows = await conn.execute(
        text(
            "SELECT s.execution_id FROM pipeline_step s "
            "WHERE s.kind = 'group' AND s.status = 'succeeded' AND s.finished_at IS NOT NULL "
            "AND jsonb_typeof(s.input->'file_ids') = 'array' AND EXISTS ("
            "  SELECT 1 FROM jsonb_array_elements_text(s.input->'file_ids') i(id) "
            "  JOIN imported_file f ON f.id = CAST(i.id AS bigint) "
            "  WHERE f.kind <> 'proxy' AND f.session_key IS NULL "
            "  AND (f.imported_at > s.finished_at OR EXISTS (SELECT 1 FROM qr_scan q "
            "       WHERE q.file_id = f.id AND q.scanned_at > s.finished_at))) "
            "ORDER BY 1"
        )
    )
    return [int(r[0]) for r in rows]


async def stale_requests(conn: AsyncConnection, after_s: float) -> list[int]:
    """Files still `requested` (not copying) `after_s` after their last request while a copy
    step waits for them: their request may have been lost."""
    rows = await conn.execute(
        text(
            "SELECT f.id FROM imported_file f WHERE f.status = 'requested' "
            "AND f.requested_at < now() - make_interval(secs => :s) AND EXISTS ("
            "  SELECT 1 FROM pipeline_step s WHERE s.name = 'copy:' || f.id::text "
            "  AND s.kind = 'copy' AND s.status = 'running') ORDER BY f.id"
        ),
        {"s": after_s},
    )
    return [int(r[0]) for r in rows]


async def review_session(conn: AsyncConnection, key: str, reason: str) -> bool:
    """Send a session to a person with `reason` (True when the reason is new).

    A decoded or assigned session becomes `needs_review` (an operator's `assign` then approves
    it); one already waiting for a person keeps its status and gets the reason appended. Once
    per reason: a redelivered step adds nothing."""
    result = await conn.execute(
        text(
            "UPDATE jump_session SET "
            "status = CASE WHEN status IN ('decoded', 'assigned') THEN 'needs_review' "
            "  ELSE status END, "
            "review_reason = CASE WHEN review_reason = '' THEN :r "
            "  ELSE review_reason || '; ' || :r END, updated_at = now() "
            "WHERE key = :k AND strpos(review_reason, :r) = 0"
        ),
        {"k": key, "r": reason[:2000]},
    )
    return bool(result.rowcount)
