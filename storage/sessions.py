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
    # issue 16: set with the assignment (None: left as it was); `amended`: the session had
    # this booking already and only its email/product changed
    email: str | None = None
    product: str | None = None
    amended: bool = False
    email_before: str | None = None


async def _amend(
    conn: AsyncConnection,
    key: str,
    current: tuple[str, int | None, str | None, str | None],
    booking_id: str,
    actor: str,
    email: str | None,
    product: str | None,
) -> Assigned:
    """A decoded/assigned session of this booking: only its email/product change (issue 16)."""
    status, execution_id, had_booking, email_before = current
    if not (email or product) or had_booking != booking_id:
        raise SessionNotAssignable(key, status)
    row = (
        await conn.execute(
            text(
                "UPDATE jump_session SET email = coalesce(:em, email), "
                "product = coalesce(:pr, product), updated_at = clock_timestamp() WHERE key = :k "
                "RETURNING coalesce(passenger, '')"
            ),
            {"k": key, "em": email, "pr": product},
        )
    ).one()
    what = ", ".join(f"{n} {v}" for n, v in (("email", email), ("product", product)) if v)
    if execution_id is not None:
        await log_on_execution(
            conn, int(execution_id), f"session {key}: {what} set by {actor}", actor
        )
    logger.info("session %s (booking %s): %s set by %s", key, booking_id, what, actor)
    return Assigned(
        key, booking_id, str(row[0]), execution_id, status, email, product, True, email_before
    )


async def assign_session(
    conn: AsyncConnection,
    key: str,
    booking_id: str,
    passenger: str,
    actor: str,
    *,
    email: str | None = None,
    product: str | None = None,
) -> Assigned:
    """Assign a booking and passenger to a session awaiting one; raises SessionError.

    With `email`/`product` (issue 16) they are stored too; a session that has this booking
    already (decoded, or assigned before) gets only those two changed."""
    current = (
        await conn.execute(
            text(
                "SELECT status, execution_id, booking_id, email FROM jump_session "
                "WHERE key = :k FOR UPDATE"
            ),
            {"k": key},
        )
    ).first()
    if current is None:
        raise SessionNotFound(key)
    status, execution_id = str(current[0]), current[1]
    if status not in ASSIGNABLE:
        return await _amend(
            conn, key, (status, execution_id, current[2], current[3]), booking_id, actor, email,
            product,
        )  # fmt: skip
    await conn.execute(
        text(
            "UPDATE jump_session SET status = 'assigned', booking_id = :b, passenger = :p, "
            "assigned_by = :a, email = coalesce(:em, email), product = coalesce(:pr, product), "
            "updated_at = clock_timestamp() WHERE key = :k"
        ),
        {"k": key, "b": booking_id, "p": passenger, "a": actor[:200], "em": email, "pr": product},
    )
    if execution_id is not None:
        await log_on_execution(
            conn,
            int(execution_id),
            f"session {key} assigned to booking {booking_id} ({passenger}) by {actor}",
            actor,
        )
    logger.info("session %s assigned to booking %s by %s (was %s)", key, booking_id, actor, status)
    return Assigned(
        key, booking_id, passenger, execution_id, status, email, product, False, current[3]
    )


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
