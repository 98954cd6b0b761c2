"""An operator's marks for a jump (issue 15), checked before the ``edit`` command is sent: the one
check the hub's ``POST /api/sessions/{key}/edit`` (streams/hub/api_actions.py) and ``skyreel
edit`` (streams/cli/edit.py) share.

:func:`parse_marks` validates the body (numbers of seconds, ``exit < opening < landing``, none
negative); :func:`precheck` what storage can say (the session exists, its pipeline has a
``phases`` step, the marks lie within its recording). The engine checks again when it applies the
command (agents/jobs/edit_marks.py): the same messages, whoever is first.
"""

from __future__ import annotations

import enum
import logging

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import session_edit
from streams import records

logger = logging.getLogger(__name__)


class Rejection(enum.StrEnum):
    INVALID = "invalid"  # HTTP 422, exit status 2
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409


class EditRejected(Exception):
    def __init__(self, kind: Rejection, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def describe(exc: ValidationError) -> str:
    """The validation errors of a marks body in one line ('exit: must be a number of seconds')."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "marks"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_marks(body: object) -> records.EditMarks:
    """The marks of a request body ``{"exit", "opening", "landing"}``; EditRejected (invalid)."""
    if not isinstance(body, dict):
        raise EditRejected(
            Rejection.INVALID,
            'the body must be a JSON object {"exit": s, "opening": s, "landing": s | null}',
        )
    try:
        return records.EditMarks.model_validate(body)
    except ValidationError as exc:
        raise EditRejected(Rejection.INVALID, describe(exc)) from None


def refusal(
    facts: session_edit.EditFacts | None, key: str, marks: records.EditMarks
) -> EditRejected | None:
    """Why the marks cannot be applied to the session (pure); None when they can."""
    if facts is None:
        return EditRejected(Rejection.NOT_FOUND, f"session {key!r} not found")
    if facts.execution_id is None:
        return EditRejected(
            Rejection.CONFLICT, f"session {key} has no jump pipeline yet: nothing to edit"
        )
    if facts.phases_status is None:
        return EditRejected(
            Rejection.CONFLICT,
            f"session {key}'s pipeline has no phases step (it started with the edit off, or "
            "before it existed): there is no edit to move; assign the session to render it whole",
        )
    if facts.recording_s is not None:
        why = marks.beyond(facts.recording_s)
        if why:
            return EditRejected(Rejection.INVALID, f"session {key}: {why}")
    return None


async def precheck(conn: AsyncConnection, key: str, marks: records.EditMarks) -> int:
    """The session's execution id when the marks can be sent for it; EditRejected otherwise."""
    facts = await session_edit.edit_facts(conn, key)
    problem = refusal(facts, key, marks)
    if problem is not None:
        raise problem
    assert facts is not None and facts.execution_id is not None
    return facts.execution_id
