"""The ``render`` step: claimed here, run on the Redis render queue (saq), reported back by the
render worker (agents/render/worker.py) as step progress and results.

The job's payload is built from the ledger at dispatch time — the session's footage in capture
order with its probed facts and identity (id, size, content hash), the booking, the session's own
output name (stored on first render, agents/render/identity.py), the dropzone's branding — never
from free text of a message. Failures stay local: a clip whose probe failed (or that never
arrived or was never probed) is left out with a warning on the session; only a session with no
clip left fails. The saq job key is ``<execution>:<step>:<attempt>``: a redelivered request enqueues
nothing twice, and a new attempt (retry) is a new job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from saq import Queue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.jobs.context import JobContext
from agents.pipeline.errors import PermanentStepError
from agents.render.identity import output_name
from agents.render.queue import RENDER_FUNCTION
from storage import media
from streams import records
from streams.topics import Names

if TYPE_CHECKING:
    from agents.pipeline.runner import Runner

logger = logging.getLogger(__name__)

JOB_TIMEOUT_S = 3 * 3600


def choose_footage(
    file_ids: Sequence[int], rows: Mapping[int, media.FileRow]
) -> tuple[list[media.FileRow], list[str]]:
    """The clips a render can use, in session order, and a warning for each one left out."""
    kept: list[media.FileRow] = []
    left_out: list[str] = []
    for file_id in file_ids:
        r = rows.get(file_id)
        if r is None:
            left_out.append(f"file {file_id} left out of the video: not in the ledger")
        elif r.probe_error:
            detail = r.probe_error.removeprefix("not a readable video: ")
            left_out.append(f"{r.name} left out of the video: not a readable video ({detail})")
        elif r.status != "imported" or not r.stored_path:
            why = f"{r.status}: {r.reason}" if r.reason else r.status
            left_out.append(f"{r.name} left out of the video: not copied from the card ({why})")
        elif r.duration_s is None:
            left_out.append(f"{r.name} left out of the video: it was never probed")
        else:
            kept.append(r)
    return kept, left_out


def session_output_name(session: media.SessionRow, rows: Sequence[media.FileRow]) -> str:
    """The name a session's output gets on its first render (stored, then kept)."""
    assert session.booking_id is not None
    start: datetime | None = session.capture_start
    if start is None:  # not filled in by the grouping: the earliest clip of the session
        start = min(r.capture_time for r in rows)
    try:
        return output_name(session.booking_id, session.passenger or "", start, session.key)
    except ValueError as exc:
        raise PermanentStepError(f"session {session.key}: {exc}") from exc


@dataclass(frozen=True)
class _Built:
    payload: dict[str, object] | None
    error: str = ""


async def render_request(
    jc: JobContext, session_key: str, execution_id: int | None = None
) -> dict[str, object]:
    """The render job of a session, from the ledger; left-out clips become session warnings."""
    async with jc.engine.begin() as conn:
        built = await _build(jc, conn, session_key, execution_id)
    # raised after the commit: the warnings of a session that cannot render are kept
    if built.payload is None:
        raise PermanentStepError(built.error)
    return built.payload


async def _build(
    jc: JobContext, conn: AsyncConnection, session_key: str, execution_id: int | None
) -> _Built:
    session = await media.load_session(conn, session_key)
    if session is None:
        return _Built(None, f"no jump session {session_key!r}")
    if not session.booking_id:
        return _Built(None, f"session {session_key} has no booking")
    rows = {r.id: r for r in await media.load_files(conn, session.file_ids)}
    kept, left_out = choose_footage(session.file_ids, rows)
    for warning in left_out:
        if await media.add_session_warning(conn, session_key, warning):
            logger.warning("session %s: %s", session_key, warning)
    if not kept:
        why = "; ".join(left_out) or "the session has no footage"
        return _Built(None, f"session {session_key}: no clip can be rendered ({why})")
    try:
        name = session.output_name or session_output_name(session, list(rows.values()))
    except PermanentStepError as exc:
        return _Built(None, exc.reason)
    stored = await media.claim_output_name(conn, session_key, name) or name
    clips = [
        {
            "path": str((jc.settings.share_root / str(r.stored_path)).resolve()),
            "duration": r.duration_s,
            "width": r.width or 0,
            "height": r.height or 0,
            "fps": r.fps or 30.0,
            "has_audio": bool(r.has_audio),
            "id": r.id,
            "size": r.size,
            "sha256": r.content_hash,
        }
        for r in kept
    ]
    payload: dict[str, object] = {
        "session_key": session_key,
        "output_name": stored,
        "execution_id": execution_id,
        "booking_id": session.booking_id,
        "passenger_name": session.passenger or "",
        "clips": clips,
        "branding": jc.settings.branding(),
    }
    return _Built(payload)


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
            payload = await render_request(self.jc, session, request.execution_id)
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


_RENDER_OUTPUT_KEYS = ("video", "poster", "manifest", "session_key", "output_name", "fingerprint")


async def render_output(jc: JobContext, execution_id: int) -> dict[str, str]:
    """The render step's output: video, poster and manifest, and whose they are."""
    async with jc.engine.connect() as conn:
        output = await conn.scalar(
            text(
                "SELECT output FROM pipeline_step WHERE execution_id = :e AND name = 'render' "
                "AND status = 'succeeded'"
            ),
            {"e": execution_id},
        )
    if not isinstance(output, dict) or not all(output.get(k) for k in _RENDER_OUTPUT_KEYS):
        raise PermanentStepError(
            "the render step's output lacks video/poster/manifest (rendered by an older "
            "version?): retry the render"
        )
    return {k: str(output[k]) for k in _RENDER_OUTPUT_KEYS}
