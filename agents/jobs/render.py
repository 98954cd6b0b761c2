"""The ``render`` step: claimed here, run on the Redis render queue (saq), reported back by the
render worker (agents/render/worker.py) as step progress and results.

The job's payload is built from the ledger at dispatch time — the session's footage in capture
order with its probed facts, the booking, the dropzone's branding — never from free text of a
message. The saq job key is ``<execution>:<step>:<attempt>``: a redelivered request enqueues
nothing twice, and a new attempt (retry) is a new job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from saq import Queue
from sqlalchemy import text

from agents.jobs.context import JobContext
from agents.pipeline.errors import PermanentStepError
from agents.render.queue import RENDER_FUNCTION
from storage import media
from streams import records
from streams.topics import Names

if TYPE_CHECKING:
    from agents.pipeline.runner import Runner

logger = logging.getLogger(__name__)

JOB_TIMEOUT_S = 3 * 3600


async def render_request(jc: JobContext, session_key: str) -> dict[str, object]:
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, session_key)
        if session is None:
            raise PermanentStepError(f"no jump session {session_key!r}")
        rows = {r.id: r for r in await media.load_files(conn, session.file_ids)}
    clips = []
    for file_id in session.file_ids:
        r = rows.get(file_id)
        if r is None or r.stored_path is None or r.duration_s is None:
            raise PermanentStepError(f"footage file {file_id} is not imported and probed")
        clips.append(
            {
                "path": str((jc.settings.share_root / r.stored_path).resolve()),
                "duration": r.duration_s,
                "width": r.width or 0,
                "height": r.height or 0,
                "fps": r.fps or 30.0,
                "has_audio": bool(r.has_audio),
            }
        )
    if not session.booking_id:
        raise PermanentStepError(f"session {session_key} has no booking")
    return {
        "booking_id": session.booking_id,
        "passenger_name": session.passenger or "",
        "clips": clips,
        "branding": jc.settings.branding(),
    }


class RenderDispatcher:
    """Claims render steps and enqueues their jobs (the runner's render seam)."""

    def __init__(self, jc: JobContext) -> None:
        self.jc = jc
        self.runner: Runner | None = None
        self._queue: Queue | None = None

    async def queue(self) -> Queue:
        if self._queue is None:
            queue = Queue.from_url(
                self.jc.settings.redis_url, name=Names(self.jc.settings.topic_prefix).render_queue
            )
            await queue.connect()
            self._queue = queue
        return self._queue

    async def __call__(self, request: records.StepRequest) -> None:
        assert self.runner is not None, "RenderDispatcher.runner must be set"
        claimed = await self.runner.claim([request])
        if not claimed:
            return  # a duplicate request, or the attempt is not current any more
        try:
            session = str((request.input or {}).get("session", ""))
            payload = await render_request(self.jc, session)
        except PermanentStepError as exc:
            await self._fail(request, exc.reason)
            return
        queue = await self.queue()
        key = f"{request.execution_id}:{request.step}:{request.attempt}"
        job = await queue.enqueue(
            RENDER_FUNCTION,
            key=key,
            request=payload,
            timeout=JOB_TIMEOUT_S,
            heartbeat=self.jc.settings.render_heartbeat_s,
            retries=3,
            step={
                "execution_id": request.execution_id,
                "step": request.step,
                "attempt": request.attempt,
            },
        )
        logger.info(
            "execution %d: render attempt %d queued as job %s%s",
            request.execution_id,
            request.attempt,
            key,
            "" if job else " (exists)",
        )

    async def _fail(self, request: records.StepRequest, reason: str) -> None:
        result = records.StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            status="failed",
            error=reason,
            retryable=False,
            worker="render-dispatch",
        )
        await self.jc.send_result(str(request.execution_id).encode(), records.encode(result))

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()


async def render_output(jc: JobContext, execution_id: int) -> dict[str, str]:
    """The render step's output (video and poster in the staging area)."""
    async with jc.engine.connect() as conn:
        output = await conn.scalar(
            text(
                "SELECT output FROM pipeline_step WHERE execution_id = :e AND name = 'render' "
                "AND status = 'succeeded'"
            ),
            {"e": execution_id},
        )
    if not isinstance(output, dict) or not output.get("video") or not output.get("poster"):
        raise PermanentStepError("the render step has no video/poster output")
    return {"video": str(output["video"]), "poster": str(output["poster"])}
