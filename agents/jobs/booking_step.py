"""The `booking` step: the session's booking, or wait for a person to assign one."""

from __future__ import annotations

from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.step_input import str_input
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from storage import media
from storage.enums import SessionStatus
from streams import records

KIND = kinds.BOOKING


def handler(jc: JobContext) -> Handler:
    async def booking(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        key = str_input(request, "session")
        async with jc.engine.connect() as conn:
            session = await media.load_session(conn, key)
        if session is None:
            raise PermanentStepError(f"no jump session {key!r}")
        if session.booking_id and session.status in (
            SessionStatus.DECODED,
            SessionStatus.ASSIGNED,
        ):
            return StepOutput(
                {"booking_id": session.booking_id, "passenger": session.passenger or ""}
            )
        why = session.review_reason or (
            "the QR clip could not be read"
            if session.status == SessionStatus.NEEDS_REVIEW
            else "the footage came before any QR clip"
        )
        return StepOutput(waiting=f"needs a booking: {why}; assign one on the dashboard")

    return booking
