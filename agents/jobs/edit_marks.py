"""Marks set by hand move a jump's edit (API ``POST /api/sessions/{key}/edit``, ``skyreel edit``),
applied from an ``edit`` operator command (agents/commands.py).

In one transaction: the marks are stored (storage/session_edit.py), a session that waited for a
person because of its edit (``needs_review`` after its booking was settled) is approved, as an
assign would approve it, and the session's ``phases`` step and everything after it (render,
publish) are set to run again (``operations.rerun_step``: a new attempt each). After the commit the
``phases`` request is sent: it builds the EDL from the operator's marks, the render cuts the
video again and publish replaces the session's own earlier output. Because the marks row records
the command id in the same transaction, a command applied again (a worker killed before its
outcome was stored) re-runs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline import operations as ops
from agents.pipeline.dispatch import Emitter, send_requests
from storage import session_edit
from storage.sessions import log_on_execution
from streams import records
from streams.edit_request import Rejection, refusal

logger = logging.getLogger(__name__)

STEP = "phases"


class EditRefused(Exception):
    """The marks cannot be applied; `not_found` for an unknown session, else a conflict."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True)
class MarksSet:
    key: str
    execution_id: int
    marks: dict[str, float | None]
    rerun: list[str]  # steps dispatched now (phases); render and publish follow it
    approved: bool  # the session waited for a person because of its edit, and no longer does
    applied_before: bool  # this command was applied already: nothing was done again


def check(facts: session_edit.EditFacts | None, key: str, marks: records.EditMarks) -> int:
    """The session's execution id when the marks can be applied to it (pure); EditRefused."""
    problem = refusal(facts, key, marks)
    if problem is not None:
        raise EditRefused(problem.message, not_found=problem.kind is Rejection.NOT_FOUND)
    assert facts is not None and facts.execution_id is not None
    return facts.execution_id


async def set_marks(
    engine: AsyncEngine,
    emitter: Emitter,
    key: str,
    marks: records.EditMarks,
    actor: str,
    command_id: str,
) -> MarksSet:
    """Store the marks, approve, re-run phases and what follows it; raises EditRefused."""
    async with engine.begin() as conn:
        facts = await session_edit.edit_facts(conn, key)
        eid = check(facts, key, marks)
        assert facts is not None
        stored = await session_edit.load_marks(conn, key)
        if stored is not None and stored.command_id == command_id:
            logger.info("session %s: edit command %s applied already", key, command_id)
            return MarksSet(key, eid, marks.as_dict(), [], False, True)
        await session_edit.save_marks(conn, key, marks.as_dict(), actor, command_id)
        approved = False
        if facts.status == "needs_review" and facts.booking_done:
            approved = await session_edit.approve_edit(conn, key, actor)
        landing = "none" if marks.landing is None else f"{marks.landing:g} s"
        what = f"exit {marks.exit:g} s, opening {marks.opening:g} s, landing {landing}"
        await log_on_execution(
            conn,
            eid,
            f"session {key}: marks set by {actor} ({what})"
            + ("; the edit is approved" if approved else ""),
            actor,
        )
        ready = await ops.rerun_step(conn, eid, STEP, actor, f"marks set by {actor} ({what})")
    await send_requests(emitter, ready, None)
    logger.info(
        "session %s: marks set by %s (%s)%s; %s run again",
        key,
        actor,
        what,
        ", approved" if approved else "",
        STEP,
    )
    return MarksSet(key, eid, marks.as_dict(), [s.name for s in ready], approved, False)
