"""A booking assigned by hand moves a waiting jump on (API ``assign``, ``skyreel assign``).

The session is assigned in the database (storage/sessions.py: guarded, so two operators cannot
both win); then its ``booking`` step, which waits while RUNNING, gets a success result for its
current attempt — the orchestrator then promotes ``render`` as for any other result. A booking
step that had not run yet needs nothing: it will find the booking when it runs.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from storage import pipeline as repo
from storage.enums import StepStatus
from storage.sessions import Assigned, assign_session
from streams import records
from streams.kafka import Send

logger = logging.getLogger(__name__)


async def assign_booking(
    engine: AsyncEngine,
    key: str,
    booking_id: str,
    passenger: str,
    actor: str,
    *,
    send_result: Send,
    email: str | None = None,
    product: str | None = None,
) -> Assigned:
    """Assign and resume; raises storage.sessions.SessionNotFound / SessionNotAssignable.

    `email`/`product` (issue 16) are stored with it; on a session that has this booking already
    only they change (nothing to resume). The steps a new product buys are added by the
    command's caller (agents/jobs/bought_later.py)."""
    async with engine.begin() as conn:
        assigned = await assign_session(
            conn, key, booking_id, passenger, actor, email=email, product=product
        )
        if assigned.amended:
            return assigned
        rows = []
        if assigned.execution_id is not None:
            rows = await repo.load_steps(conn, assigned.execution_id, ["booking"])
    step = rows[0].state if rows else None
    if assigned.execution_id is not None and step is not None and step.status is StepStatus.RUNNING:
        result = records.StepResult(
            execution_id=assigned.execution_id,
            step="booking",
            attempt=step.attempt,
            status="succeeded",
            output={"booking_id": booking_id, "passenger": passenger, "assigned_by": actor},
            worker=f"assign:{actor}"[:200],
        )
        await send_result(*result.message())
    logger.info(
        "session %s assigned to %s by %s (execution %s)",
        key,
        booking_id,
        actor,
        assigned.execution_id,
    )
    return assigned
