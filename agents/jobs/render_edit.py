"""What the `phases` step decided, as the render job's cuts and music (issue 15).

The render dispatch (agents/jobs/render.py) asks :func:`edit_cuts` for the session's edit: the
`phases` step's stored `EditRecord` read once, mapped to `RenderJob.cuts` (input indexes of the
kept clips) and `RenderJob.music`; or why the render must wait for a person; or why it cannot
render. No edit (the setting off, or an assigned session approved without one) renders every
clip whole, as before the edit existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agents.jobs.edit_record import EditRecord
from agents.render.contract import RenderCut, RenderMusic
from storage import media
from storage import pipeline as repo
from storage.enums import SessionStatus

#: why a session of an execution without a `phases` step waits when the edit is on
NO_EDIT_REASON = (
    "no automatic edit: this jump's pipeline was started without the edit (or before it "
    "existed); assign the session to approve rendering every clip whole"
)


@dataclass(frozen=True)
class EditCuts:
    """The render's cuts (None: every clip whole) and music, or why it waits or cannot render."""

    cuts: list[RenderCut] | None = None
    music: RenderMusic | None = None
    review: str = ""
    error: str = ""


def render_music(record: EditRecord) -> RenderMusic | None:
    """The render's music bed: the edit's, None without an edit or music."""
    m = record.music if record.spans is not None else None
    return None if m is None else RenderMusic(**asdict(m))


def cuts_of(
    record: EditRecord, session: media.SessionRow, kept: Sequence[media.FileRow]
) -> EditCuts:
    """The decided edit as the render's cuts over the kept clips (pure)."""
    approved = session.status == SessionStatus.ASSIGNED
    if record.needs_review and not approved:
        reason = session.review_reason or "the automatic edit needs review"
        return EditCuts(review=f"waiting for a person: {reason}")
    if record.spans is None:
        return EditCuts()  # approved without an edit: every clip whole
    index = {r.id: n for n, r in enumerate(kept)}
    missing = sorted({s.file_id for s in record.spans} - set(index))
    if missing:
        return EditCuts(
            error=f"session {session.key}: the edit names clips {missing} the render leaves "
            "out; retry the phases step"
        )
    cuts = [RenderCut(clip=index[s.file_id], start=s.start, end=s.end, speed=s.speed)
            for s in record.spans]  # fmt: skip
    return EditCuts(cuts, render_music(record))


async def edit_cuts(
    conn: AsyncConnection,
    session: media.SessionRow,
    kept: Sequence[media.FileRow],
    execution_id: int | None,
    *,
    edit_on: bool,
) -> EditCuts:
    """The session's edit from its `phases` step's output; a session whose execution has none
    waits for a person while the edit is on (unless it was assigned, which approves it whole)."""
    output = (
        await repo.succeeded_output(conn, execution_id, "phases")
        if execution_id is not None
        else None
    )
    if output is None:
        if not edit_on or session.status == SessionStatus.ASSIGNED:
            return EditCuts()  # the behaviour before the edit: configured, or approved
        await media.review_session(conn, session.key, NO_EDIT_REASON)
        return EditCuts(review=NO_EDIT_REASON)
    try:
        record = EditRecord.from_output(output)
    except ValueError as exc:
        return EditCuts(error=f"session {session.key}: {exc}; retry the phases step")
    return cuts_of(record, session, kept)
