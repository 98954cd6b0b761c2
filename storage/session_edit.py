"""Operator marks of a jump session (issue 15): the exit, opening and landing an operator set by
hand on the recording's timeline, stored in ``session_edit`` (migration 0007), and the facts the
API, the CLI and the engine check before a re-edit (does the session have a ``phases`` step, how
long is its recording).

The ``phases`` step (agents/jobs/phases_step.py) reads :func:`load_marks` and builds the edit
from them instead of detecting; the engine's ``edit`` command (agents/commands.py) writes them
with :func:`save_marks` and approves a session that waited for a person because of the edit
(:func:`approve_edit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import SessionEditRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredMarks:
    """Marks as stored: seconds on the recording's timeline (landing may be None)."""

    session_key: str
    exit: float
    opening: float
    landing: float | None
    set_by: str
    set_at: datetime
    command_id: str


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def load_marks(conn: AsyncConnection, key: str) -> StoredMarks | None:
    """The operator marks of a session; None when nobody set any (or the row is unusable)."""
    row = (
        await conn.execute(
            text(
                "SELECT marks, set_by, set_at, command_id FROM session_edit WHERE session_key = :k"
            ),
            {"k": key},
        )
    ).first()
    if row is None:
        return None
    marks: dict[str, Any] = row.marks if isinstance(row.marks, dict) else {}
    exit_s, opening = _num(marks.get("exit")), _num(marks.get("opening"))
    if exit_s is None or opening is None:
        logger.warning("session %s: stored operator marks unusable: %r", key, marks)
        return None
    return StoredMarks(
        key, exit_s, opening, _num(marks.get("landing")), str(row.set_by), row.set_at,
        str(row.command_id),
    )  # fmt: skip


async def save_marks(
    conn: AsyncConnection,
    key: str,
    marks: dict[str, float | None],
    actor: str,
    command_id: str,
) -> StoredMarks:
    """Store (or replace) a session's operator marks; returns them as stored."""
    stmt = insert(SessionEditRow).values(
        session_key=key, marks=marks, set_by=actor[:200], command_id=command_id[:64]
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[SessionEditRow.session_key],
            set_={
                "marks": stmt.excluded.marks,
                "set_by": stmt.excluded.set_by,
                "set_at": text("clock_timestamp()"),
                "command_id": stmt.excluded.command_id,
            },
        )
    )
    stored = await load_marks(conn, key)
    assert stored is not None
    return stored


@dataclass(frozen=True)
class EditFacts:
    """What a re-edit of a session is checked against."""

    key: str
    status: str  # the session's
    booking_id: str | None
    execution_id: int | None
    phases_status: str | None  # None: the execution has no `phases` step
    booking_done: bool  # the `booking` step succeeded (the session had its booking)
    recording_s: float | None  # the phases output's, else the probed clips summed


async def edit_facts(conn: AsyncConnection, key: str) -> EditFacts | None:
    """The facts of a session for a re-edit; None when there is no such session."""
    row = (
        await conn.execute(
            text(
                "SELECT s.status, s.booking_id, s.execution_id, "
                " (SELECT status FROM pipeline_step WHERE execution_id = s.execution_id "
                "   AND name = 'phases') AS phases_status, "
                " (SELECT output FROM pipeline_step WHERE execution_id = s.execution_id "
                "   AND name = 'phases' AND status = 'succeeded') AS phases_output, "
                " EXISTS (SELECT 1 FROM pipeline_step WHERE execution_id = s.execution_id "
                "   AND name = 'booking' AND status = 'succeeded') AS booking_done, "
                " (SELECT sum(f.duration_s) FROM imported_file f "
                "   WHERE f.id::text = ANY(s.file_ids) AND f.probe_error = '' "
                "   AND f.duration_s IS NOT NULL) AS probed_s "
                "FROM jump_session s WHERE s.key = :k"
            ),
            {"k": key},
        )
    ).first()
    if row is None:
        return None
    recording = None
    output = row.phases_output
    if isinstance(output, dict):
        recording = _num(output.get("recording_s"))
    if recording is None and row.probed_s is not None:
        recording = float(row.probed_s)
    return EditFacts(
        key=key,
        status=str(row.status),
        booking_id=row.booking_id,
        execution_id=row.execution_id,
        phases_status=None if row.phases_status is None else str(row.phases_status),
        booking_done=bool(row.booking_done),
        recording_s=recording,
    )


async def approve_edit(conn: AsyncConnection, key: str, actor: str) -> bool:
    """A session waiting for a person because of its edit (needs_review, with its booking)
    becomes assigned, as an operator's assign would make it; True when it changed."""
    result = await conn.execute(
        text(
            "UPDATE jump_session SET status = 'assigned', assigned_by = :a, "
            "updated_at = clock_timestamp() "
            "WHERE key = :k AND status = 'needs_review' AND booking_id IS NOT NULL"
        ),
        {"k": key, "a": actor[:200]},
    )
    return bool(result.rowcount)
