"""Jump-session writes an operator makes: assigning a booking to an unreadable/unassigned jump.

`assign_session` is the database half of "assign a booking": it moves a `needs_review` or
`unassigned` session to `assigned` (guarded by that status, so two operators cannot both win)
and records the action in the step log of the session's execution. The pipeline half (resume the
jump's render) belongs to `agents.pipeline.jumps.assign_booking`; the API calls that when it
exists and falls back to this function otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger(__name__)

ASSIGNABLE = frozenset({"needs_review", "unassigned"})


class SessionError(Exception):
    """Base of the errors an assignment can raise (permanent: retrying will not help)."""


class SessionNotFound(SessionError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no jump session {key!r}")


class SessionNotAssignable(SessionError):
    """The session is already decoded or assigned (HTTP 409)."""

    def __init__(self, key: str, status: str) -> None:
        self.key = key
        self.status = status
        super().__init__(
            f"jump session {key!r} is {status}; only {sorted(ASSIGNABLE)} can be assigned"
        )


@dataclass(frozen=True)
class Assigned:
    key: str
    booking_id: str
    passenger: str
    execution_id: int | None
    previous_status: str


async def assign_session(
    conn: AsyncConnection, key: str, booking_id: str, passenger: str, actor: str
) -> Assigned:
    """Assign a booking and passenger to a session awaiting one; raises SessionError."""
    current = (
        await conn.execute(
            text("SELECT status, execution_id FROM jump_session WHERE key = :k FOR UPDATE"),
            {"k": key},
        )
    ).first()
    if current is None:
        raise SessionNotFound(key)
    status, execution_id = str(current[0]), current[1]
    if status not in ASSIGNABLE:
        raise SessionNotAssignable(key, status)
    await conn.execute(
        text(
            "UPDATE jump_session SET status = 'assigned', booking_id = :b, passenger = :p, "
            "assigned_by = :a, updated_at = clock_timestamp() WHERE key = :k"
        ),
        {"k": key, "b": booking_id, "p": passenger, "a": actor[:200]},
    )
    if execution_id is not None:
        await log_on_execution(
            conn,
            int(execution_id),
            f"session {key} assigned to booking {booking_id} ({passenger}) by {actor}",
            actor,
        )
    logger.info("session %s assigned to booking %s by %s (was %s)", key, booking_id, actor, status)
    return Assigned(key, booking_id, passenger, execution_id, status)


async def log_on_execution(
    conn: AsyncConnection, execution_id: int, message: str, actor: str
) -> int:
    """Record an operator action in the step log of an execution; returns lines written.

    The log is per step, so the line goes to the steps waiting on something outside (the ones
    the action is about), else to the execution's first step.
    """
    result = await conn.execute(
        text(
            "INSERT INTO pipeline_step_log (step_id, attempt, level, message, actor) "
            "SELECT id, attempt, 'info', :m, :a FROM pipeline_step WHERE execution_id = :e "
            "AND (waiting_for <> '' OR id = (SELECT min(id) FROM pipeline_step "
            "  WHERE execution_id = :e AND NOT EXISTS (SELECT 1 FROM pipeline_step w "
            "  WHERE w.execution_id = :e AND w.waiting_for <> '')))"
        ),
        {"e": execution_id, "m": message[:4000], "a": actor[:200]},
    )
    return int(result.rowcount or 0)
