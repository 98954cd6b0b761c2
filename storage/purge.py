"""The SQL of a purge (issue 16, item 5): what a booking has, and forgetting it.

A booking is the ``booking_id`` of its jump sessions (there is no booking table). What it has:
its sessions (with the time their video was delivered: the publish step's finish), the step
outputs of its jump executions (the files it made), the ledger rows of its clips (the share
copies), the names and emails it was known by. Forgetting: the copies' ledger rows are marked
``purged_at`` and keep their identity and ``imported`` status (a card inserted again copies
nothing); names and emails are replaced in every row tied to the booking; links are revoked;
every purge is written to ``purge_record``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class BookingSession:
    """One jump session of a booking, as a purge and the retention rules see it."""

    key: str
    booking_id: str
    card_id: str
    execution_id: int | None
    passenger: str | None
    output_name: str | None
    file_ids: tuple[int, ...]
    created_at: datetime
    delivered_at: datetime | None
    media_purged_at: datetime | None
    personal_purged_at: datetime | None


_SESSIONS = """
SELECT s.key, s.booking_id, s.card_id, s.execution_id, s.passenger, s.output_name,
       s.created_at, s.media_purged_at, s.personal_purged_at,
       (SELECT array_agg(DISTINCT f.id) FROM imported_file f
         WHERE f.id = ANY(CAST(s.file_ids AS bigint[])) OR f.id = s.qr_file_id
            OR f.session_key = s.key) AS file_ids,
       (SELECT max(p.finished_at) FROM pipeline_step p
         WHERE p.execution_id = s.execution_id AND p.kind = 'publish'
           AND p.status = 'succeeded') AS delivered_at
FROM jump_session s
"""


def _session(r: Any) -> BookingSession:
    return BookingSession(
        key=str(r["key"]),
        booking_id=str(r["booking_id"]),
        card_id=str(r["card_id"]),
        execution_id=r["execution_id"],
        passenger=r["passenger"],
        output_name=r["output_name"],
        file_ids=tuple(sorted(int(i) for i in r["file_ids"] or [])),
        created_at=r["created_at"],
        delivered_at=r["delivered_at"],
        media_purged_at=r["media_purged_at"],
        personal_purged_at=r["personal_purged_at"],
    )


async def booking_sessions(conn: AsyncConnection, booking_id: str) -> list[BookingSession]:
    rows = await conn.execute(
        text(_SESSIONS + " WHERE s.booking_id = :b ORDER BY s.created_at, s.key"), {"b": booking_id}
    )
    return [_session(r) for r in rows.mappings()]


async def retention_sessions(conn: AsyncConnection, limit: int = 5000) -> list[BookingSession]:
    """Every session of a booking that still has something to purge (oldest first)."""
    rows = await conn.execute(
        text(
            _SESSIONS + " WHERE s.booking_id IS NOT NULL AND s.personal_purged_at IS NULL "
            "ORDER BY s.created_at LIMIT :n"
        ),
        {"n": limit},
    )
    return [_session(r) for r in rows.mappings()]


async def execution_ids(conn: AsyncConnection, keys: Sequence[str]) -> list[int]:
    """The jump executions of these sessions (the current one and any earlier)."""
    rows = await conn.execute(
        text(
            "SELECT id FROM pipeline_execution WHERE subject_type = 'session' "
            "AND subject_id = ANY(:k) UNION SELECT execution_id FROM jump_session "
            "WHERE key = ANY(:k) AND execution_id IS NOT NULL"
        ),
        {"k": list(keys)},
    )
    return sorted(int(r[0]) for r in rows)


async def step_outputs(conn: AsyncConnection, eids: Sequence[int]) -> list[dict[str, Any]]:
    """Every step output of these executions (the files the jump made are named in them)."""
    rows = await conn.execute(
        text(
            "SELECT output FROM pipeline_step WHERE execution_id = ANY(:e) AND output IS NOT NULL "
            "ORDER BY id"
        ),
        {"e": list(eids)},
    )
    return [r[0] for r in rows if isinstance(r[0], dict)]


@dataclass(frozen=True)
class CopyRow:
    file_id: int
    stored_path: str | None
    purged_at: datetime | None


async def copies(conn: AsyncConnection, file_ids: Sequence[int]) -> list[CopyRow]:
    rows = await conn.execute(
        text("SELECT id, stored_path, purged_at FROM imported_file WHERE id = ANY(:i) ORDER BY id"),
        {"i": list(file_ids)},
    )
    return [CopyRow(int(r[0]), r[1], r[2]) for r in rows]


async def mark_copies_purged(conn: AsyncConnection, file_ids: Sequence[int]) -> int:
    """The share copies are gone; the ledger rows stay (status, identity, hash): a card inserted
    again finds them imported and copies nothing."""
    result = await conn.execute(
        text("UPDATE imported_file SET purged_at = now() WHERE id = ANY(:i) AND purged_at IS NULL"),
        {"i": list(file_ids)},
    )
    return int(result.rowcount or 0)


async def mark_sessions_purged(
    conn: AsyncConnection, booking_id: str, *, personal: bool, note: str
) -> int:
    """Media gone (and, for a personal purge, the name): said on the session for the dashboard."""
    result = await conn.execute(
        text(
            "UPDATE jump_session SET media_purged_at = coalesce(media_purged_at, now()), "
            "personal_purged_at = CASE WHEN :p THEN coalesce(personal_purged_at, now()) "
            "  ELSE personal_purged_at END, "
            "passenger = CASE WHEN :p THEN NULL ELSE passenger END, "
            "review_reason = CASE WHEN strpos(review_reason, 'purged') > 0 THEN review_reason "
            "  WHEN review_reason = '' THEN :n ELSE review_reason || '; ' || :n END, "
            "updated_at = now() WHERE booking_id = :b"
        ),
        {"b": booking_id, "p": personal, "n": note},
    )
    return int(result.rowcount or 0)


async def known_names(
    conn: AsyncConnection, booking_id: str, keys: Sequence[str], eids: Sequence[int]
) -> list[str]:
    """Every name the booking was known by: the session's passenger, the decoded ticket, the
    execution's context, an operator's assignment (an earlier name too)."""
    rows = await conn.execute(
        text(
            "SELECT passenger FROM jump_session WHERE booking_id = :b "
            "UNION SELECT q.passenger FROM qr_scan q WHERE q.booking_id = :b OR q.file_id IN "
            "  (SELECT qr_file_id FROM jump_session WHERE key = ANY(:k)) "
            "UNION SELECT context ->> 'passenger' FROM pipeline_execution WHERE id = ANY(:e) "
            "UNION SELECT command ->> 'passenger' FROM operator_command "
            "  WHERE command ->> 'booking_id' = :b OR command ->> 'session_key' = ANY(:k)"
        ),
        {"b": booking_id, "k": list(keys), "e": list(eids)},
    )
    return sorted({str(r[0]).strip() for r in rows if r[0] and str(r[0]).strip()})


async def revoke_links(conn: AsyncConnection, booking_id: str, actor: str) -> int:
    result = await conn.execute(
        text(
            "UPDATE passenger_link SET revoked_at = now(), revoked_by = :a "
            "WHERE booking_id = :b AND revoked_at IS NULL"
        ),
        {"b": booking_id, "a": actor[:200]},
    )
    return int(result.rowcount or 0)


async def record_purge(
    conn: AsyncConnection,
    booking_id: str,
    reason: str,
    requested_by: str,
    what: dict[str, Any],
    errors: Sequence[dict[str, str]],
) -> int:
    return int(
        await conn.scalar(
            text(
                "INSERT INTO purge_record (booking_id, reason, requested_by, what, errors) "
                "VALUES (:b, :r, :a, CAST(:w AS jsonb), CAST(:e AS jsonb)) RETURNING id"
            ),
            {
                "b": booking_id,
                "r": reason,
                "a": requested_by[:200],
                "w": json.dumps(what),
                "e": json.dumps(list(errors)),
            },
        )
    )


@dataclass(frozen=True)
class PurgeRecordRow:
    id: int
    booking_id: str
    reason: str
    requested_by: str
    at: datetime
    what: dict[str, Any]
    errors: list[dict[str, str]]


async def purge_records(conn: AsyncConnection, booking_id: str) -> list[PurgeRecordRow]:
    rows = await conn.execute(
        text(
            "SELECT id, booking_id, reason, requested_by, at, what, errors FROM purge_record "
            "WHERE booking_id = :b ORDER BY id"
        ),
        {"b": booking_id},
    )
    return [PurgeRecordRow(**dict(r)) for r in rows.mappings()]


async def execution_purged_at(conn: AsyncConnection, execution_id: int) -> datetime | None:
    """When the footage of this jump execution's session was deleted (None: it was not)."""
    found = await conn.scalar(
        text(
            "SELECT s.media_purged_at FROM jump_session s JOIN pipeline_execution e "
            "ON e.subject_type = 'session' AND e.subject_id = s.key WHERE e.id = :e"
        ),
        {"e": execution_id},
    )
    return found if isinstance(found, datetime) else None


async def session_purged_at(conn: AsyncConnection, key: str) -> datetime | None:
    found = await conn.scalar(
        text("SELECT media_purged_at FROM jump_session WHERE key = :k"), {"k": key}
    )
    return found if isinstance(found, datetime) else None


async def live_links(conn: AsyncConnection, booking_id: str) -> int:
    found = await conn.scalar(
        text(
            "SELECT count(*) FROM passenger_link WHERE booking_id = :b AND revoked_at IS NULL "
            "AND expires_at > now()"
        ),
        {"b": booking_id},
    )
    return int(found or 0)


async def open_errors(
    conn: AsyncConnection, booking_id: str
) -> list[tuple[int, list[dict[str, str]]]]:
    """(record id, errors) of the booking's earlier purges that could not do everything."""
    rows = await conn.execute(
        text(
            "SELECT id, errors FROM purge_record WHERE booking_id = :b "
            "AND jsonb_array_length(errors) > 0 ORDER BY id"
        ),
        {"b": booking_id},
    )
    return [(int(r[0]), list(r[1])) for r in rows]


async def set_errors(
    conn: AsyncConnection, record_id: int, errors: Sequence[dict[str, str]]
) -> None:
    """An earlier record's errors, rewritten once a later purge did what they said."""
    await conn.execute(
        text("UPDATE purge_record SET errors = CAST(:e AS jsonb) WHERE id = :i"),
        {"i": record_id, "e": json.dumps(list(errors))},
    )


async def set_what(conn: AsyncConnection, record_id: int, what: dict[str, Any]) -> None:
    await conn.execute(
        text("UPDATE purge_record SET what = CAST(:w AS jsonb) WHERE id = :i"),
        {"i": record_id, "w": json.dumps(what)},
    )


async def lock_booking(conn: AsyncConnection, booking_id: str) -> None:
    """Until the transaction ends: one purge of a booking at a time (replicas, CLI and schedule)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('skyreel-purge:' || :b))"), {"b": booking_id}
    )


_PASS_LOCK = "SELECT pg_try_advisory_lock(hashtext('skyreel-retention-pass'))"


async def try_lock_pass(conn: AsyncConnection) -> bool:
    """One retention pass at a time across workers (held by this connection until unlocked)."""
    return bool(await conn.scalar(text(_PASS_LOCK)))


async def unlock_pass(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT pg_advisory_unlock(hashtext('skyreel-retention-pass'))"))
