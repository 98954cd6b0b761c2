"""The ``render`` step: claimed here, run on the Redis render queue (saq), reported back by the
render worker (agents/render/worker.py) as step progress and results.

The job's payload is built from the ledger at dispatch time — the session's footage in capture
order with its probed facts and identity (id, size, content hash), the booking, the session's own
output name (stored on first render, agents/render/identity.py), the dropzone's branding — never
from free text of a message. Failures stay local: a clip whose probe failed (or that never
arrived or was never probed) is left out with a warning on the session; only a session with no
clip left fails. With the edit on (`edit_jumps`), the job carries the `phases` step's edit
decision list as cuts; a session the detection was not sure of waits (`NeedsReview`) until an
operator assigns it, which approves the detected edit (or whole clips when there is none). The
saq job key is ``<execution>:<step>:<attempt>``: a redelivered request enqueues
nothing twice, and a new attempt (retry) is a new job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from saq import Queue
from saq.job import Status
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.render_edit import NO_EDIT_REASON, edit_cuts, render_music
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import send_requests
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.runner import Claim
from agents.render.contract import RenderClip, RenderJob
from agents.render.default_branding import job_branding
from agents.render.identity import name_note, output_name
from agents.render.plan import sanitize_title
from agents.render.queue import RENDER_FUNCTION, job_key, recovered_output
from storage import media
from storage import pipeline as repo
from storage import purge as purge_store
from storage.enums import FileStatus, ResultStatus
from streams import records
from streams.topics import Names

logger = logging.getLogger(__name__)

__all__ = ["NO_EDIT_REASON", "ClipsPending", "NeedsReview", "RenderDispatcher", "render_music",
           "render_request"]  # fmt: skip

#: Runs on the render queue (no agent handler): `RenderDispatcher` enqueues its job.
KIND = kinds.RENDER
JOB_TIMEOUT_S = 3 * 3600


class ClipsPending(Exception):
    """Some clips of the session are neither ready nor deliberately left out: the render waits
    (a session is never rendered, nor published, with fewer clips than it was grouped with)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class NeedsReview(ClipsPending):
    """The automatic edit is not sure (or there is none): the render waits for a person, like a
    render waiting for clips (the reconciler requeues it once the session is assigned)."""


def choose_footage(
    file_ids: Sequence[int], rows: Mapping[int, media.FileRow]
) -> tuple[list[media.FileRow], list[str], list[str]]:
    """The clips a render can use, in session order; a warning for each one deliberately left
    out (unreadable, or not in the ledger); and why each clip not ready yet is not (not
    imported, or not probed yet): with any of the last, the render must wait."""
    kept: list[media.FileRow] = []
    left_out: list[str] = []
    pending: list[str] = []
    for file_id in file_ids:
        r = rows.get(file_id)
        if r is None:
            left_out.append(f"file {file_id} left out of the video: not in the ledger")
        elif r.probe_error:
            detail = r.probe_error.removeprefix("not a readable video: ")
            left_out.append(f"{r.name} left out of the video: not a readable video ({detail})")
        elif r.status != FileStatus.IMPORTED or not r.stored_path:
            why = f"{r.status}: {r.reason}" if r.reason else r.status
            pending.append(f"{r.name} is not copied from the card yet ({why})")
        elif r.duration_s is None:
            pending.append(f"{r.name} is not probed yet")
        else:
            kept.append(r)
    return kept, left_out, pending


def session_output_name(session: media.SessionRow, rows: Sequence[media.FileRow]) -> str:
    """The name a session's output gets on its first render (stored, then kept)."""
    assert session.booking_id is not None
    start: datetime | None = session.capture_start
    if start is None:  # not filled in by the grouping: the earliest clip of the session
        start = min(r.capture_time for r in rows)
    try:
        name = output_name(session.booking_id, session.passenger or "", start, session.key)
    except ValueError as exc:
        raise PermanentStepError(f"session {session.key}: {exc}") from exc
    note = name_note(session.booking_id, session.passenger or "")
    if note:  # once: the name is stored on this first render and kept
        logger.info("session %s: %s (%s)", session.key, note, name)
    return name


@dataclass(frozen=True)
class _Built:
    payload: RenderJob | None
    error: str = ""
    pending: str = ""
    review: str = ""


async def render_request(
    jc: JobContext, session_key: str, execution_id: int | None = None
) -> RenderJob:
    """The render job of a session, from the ledger; left-out clips become session warnings.
    Raises ClipsPending while a clip is not ready, PermanentStepError when none can render."""
    async with jc.engine.begin() as conn:
        built = await _build(jc, conn, session_key, execution_id)
    # raised after the commit: the warnings of a session that cannot render are kept
    if built.review:
        raise NeedsReview(built.review)
    if built.pending:
        raise ClipsPending(built.pending)
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
    if purged := await purge_store.session_purged_at(conn, session_key):  # issue 16, item 5
        return _Built(None, f"purged: footage deleted on {purged.date().isoformat()}")
    rows = {r.id: r for r in await media.load_files(conn, session.file_ids)}
    kept, left_out, pending = choose_footage(session.file_ids, rows)
    for warning in left_out:
        if await media.add_session_warning(conn, session_key, warning):
            logger.warning("session %s: %s", session_key, warning)
    if pending:
        why = "; ".join(pending[:3]) + (
            f" (and {len(pending) - 3} more)" if len(pending) > 3 else ""
        )
        return _Built(None, pending=f"waiting for every clip of the session: {why}")
    if not kept:
        why = "; ".join(left_out) or "the session has no footage"
        return _Built(None, f"session {session_key}: no clip can be rendered ({why})")
    try:
        name = session.output_name or session_output_name(session, list(rows.values()))
    except PermanentStepError as exc:
        return _Built(None, exc.reason)
    edit = await edit_cuts(conn, session, kept, execution_id, edit_on=jc.settings.edit_jumps)
    if edit.review:
        return _Built(None, review=edit.review)
    if edit.error:
        return _Built(None, edit.error)
    stored = await media.claim_output_name(conn, session_key, name) or name
    clips = [
        RenderClip(
            path=str((jc.settings.share_root / str(r.stored_path)).resolve()),
            duration=r.duration_s,
            width=r.width or 0,
            height=r.height or 0,
            fps=r.fps or 30.0,
            has_audio=bool(r.has_audio),
            id=r.id,
            size=r.size,
            sha256=r.content_hash,
        )
        for r in kept
    ]
    job = RenderJob(
        session_key=session_key,
        output_name=stored,
        execution_id=execution_id,
        booking_id=session.booking_id,
        passenger_name=session.passenger or "",
        clips=clips,
        cuts=edit.cuts,
        music=edit.music,
        branding=await _branding(jc, session.passenger or ""),
    )
    return _Built(job)


async def _branding(jc: JobContext, passenger: str) -> dict[str, object]:
    """The dropzone's branding (generated cards included); no title when there is no name to
    show (the output name and its log line say the booking has none)."""
    branding = await job_branding(jc.settings)
    if not sanitize_title(passenger):
        branding["title_enabled"] = False
    return branding


class _UsesRenderQueue:
    """Holds the job context and the render queue, connected on first use (the worker may start
    before Redis answers)."""

    def __init__(self, jc: JobContext) -> None:
        self.jc = jc
        self._queue: Queue | None = None

    async def queue(self) -> Queue:
        if self._queue is None:
            queue = Queue.from_url(
                self.jc.settings.redis_url, name=Names(self.jc.settings.topic_prefix).render_queue
            )
            await queue.connect()
            self._queue = queue
        return self._queue

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()
            self._queue = None


class RenderDispatcher(_UsesRenderQueue):
    """Claims render steps and enqueues their jobs (the runner's render seam)."""

    async def __call__(self, request: records.StepRequest, claim: Claim) -> None:
        claimed = await claim([request])
        if not claimed:
            return  # a duplicate request, or the attempt is not current any more
        try:
            session = str((request.input or {}).get("session", ""))
            payload = await render_request(self.jc, session, request.execution_id)
        except ClipsPending as exc:
            # the reconciler requeues it once every clip is there (reconcile_renders)
            await self._send(request, "waiting", exc.reason)
            logger.info("execution %d: render waits: %s", request.execution_id, exc.reason)
            return
        except PermanentStepError as exc:
            await self._send(request, "failed", exc.reason)
            return
        queue = await self.queue()
        key = job_key(request.execution_id, request.step, request.attempt)
        job = await queue.enqueue(
            RENDER_FUNCTION,
            key=key,
            request=payload.model_dump(mode="json"),
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

    async def _send(self, request: records.StepRequest, status: str, reason: str) -> None:
        result = records.StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            status=status,
            error=reason,
            retryable=False,
            worker="render-dispatch",
        )
        await self.jc.send_result(*result.message())


_RENDER_OUTPUT_KEYS = ("video", "poster", "manifest", "session_key", "output_name", "fingerprint")


async def render_output(jc: JobContext, execution_id: int) -> dict[str, str]:
    """The render step's output: video, poster and manifest, and whose they are."""
    async with jc.engine.connect() as conn:
        output = await repo.succeeded_output(conn, execution_id, "render")
    if not isinstance(output, dict) or not all(output.get(k) for k in _RENDER_OUTPUT_KEYS):
        raise PermanentStepError(
            "the render step's output lacks video/poster/manifest (rendered by an older "
            "version?): retry the render"
        )
    return {k: str(output[k]) for k in _RENDER_OUTPUT_KEYS}


# --- reconciliation: render steps checked against the render queue and the outputs ------------

#: The dispatcher enqueues within milliseconds of its claim; a render step claimed longer ago
#: than this has a job, or lost it.
RENDER_GRACE_S = 10.0
#: saq's own sweep retries a job whose worker stopped beating after its heartbeat; when no
#: render worker is alive to sweep it, after this many heartbeats the step is requeued.
STUCK_HEARTBEATS = 3


class RenderCheck(_UsesRenderQueue):
    """The reconciler's render rule (registered as a Registry check in agents/jobs/steps.py).

    For every RUNNING render step older than RENDER_GRACE_S:
      - waiting for clips: requeued once every clip of the session is there;
      - its saq job finished: its result (the job's, else re-derived from the output manifest)
        is sent as the render worker would have — a finished render is published, never
        rendered again; a job that failed with no output sends the failure;
      - its job is gone (Redis lost it, the dispatch died before enqueueing): the output of
        the same inputs, if staged or published, is its result; else the step is requeued;
      - its job is active but not touched for STUCK_HEARTBEATS heartbeats: aborted, requeued.
    """

    def __init__(self, jc: JobContext, grace_s: float = RENDER_GRACE_S) -> None:
        super().__init__(jc)
        self.grace_s = grace_s

    async def __call__(self) -> int:
        async with self.jc.engine.connect() as conn:
            rows = await repo.running_steps(conn, "render", self.grace_s)
        if not rows:
            return 0
        queue = await self.queue()
        moved = 0
        for r in rows:
            try:
                moved += await self.check(queue, r)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one step's trouble (a send refused) never stops the rest
                logger.warning(
                    "execution %d: render check failed (%s); next pass", r.execution_id, exc
                )
        return moved

    async def check(self, queue: Queue, r: repo.StepRow) -> int:
        eid, step = r.execution_id, r.state
        session = str(r.input.get("session", ""))
        if step.waiting_for:
            try:
                await render_request(self.jc, session, eid)
            except ClipsPending:
                return 0
            except PermanentStepError:
                pass  # the new attempt fails with the reason
            return await self._requeue(r, "every clip of the session is there: render requeued")
        key = job_key(eid, step.name, step.attempt)
        job = await queue.job(key)
        if job is not None and job.status is Status.COMPLETE and isinstance(job.result, dict):
            await self._result(r, ResultStatus.SUCCEEDED, output=dict(job.result))
            logger.warning("execution %d: render job %s finished, result re-sent", eid, key)
            return 1
        if job is None or job.status in (Status.FAILED, Status.ABORTED):
            out = await self._output(session, eid)
            if out is not None:
                await self._result(r, ResultStatus.SUCCEEDED, output=out)
                logger.warning(
                    "execution %d: render job %s %s but its output is there: result re-derived "
                    "from the manifest",
                    eid,
                    key,
                    "is gone" if job is None else str(job.status),
                )
                return 1
            if job is None:
                return await self._requeue(
                    r, f"render job {key} is gone from the queue and left no output: requeued"
                )
            await self._result(
                r, ResultStatus.FAILED, error=job.error or f"render job {key} {job.status}"
            )
            return 1
        if job.status in (Status.ACTIVE, Status.ABORTING) and self._stuck(job.touched, job):
            await queue.abort(job, "its render worker stopped heart-beating")
            return await self._requeue(
                r, f"render job {key}: its worker stopped heart-beating: requeued"
            )
        return 0

    def _stuck(self, touched: int, job: object) -> bool:
        beat = float(getattr(job, "heartbeat", 0) or self.jc.settings.render_heartbeat_s)
        return bool(touched) and time.time() * 1000 - touched > STUCK_HEARTBEATS * beat * 1000

    async def _output(self, session: str, eid: int) -> dict[str, object] | None:
        try:
            payload = await render_request(self.jc, session, eid)
        except (ClipsPending, PermanentStepError):
            return None
        s = self.jc.settings
        return await asyncio.to_thread(recovered_output, payload, (s.render_staging, s.output_dir))

    async def _requeue(self, r: repo.StepRow, reason: str) -> int:
        async with self.jc.engine.begin() as conn:
            ready = await ops.requeue_step(
                conn, r.execution_id, r.state.name, r.state.attempt, reason
            )
        await send_requests(self.jc.emitter, ready, None)
        return len(ready)

    async def _result(
        self,
        r: repo.StepRow,
        status: ResultStatus,
        *,
        output: dict[str, object] | None = None,
        error: str = "",
    ) -> None:
        result = records.StepResult(
            execution_id=r.execution_id,
            step=r.state.name,
            attempt=r.state.attempt,
            status=status,
            output=output,
            error=error,
            worker="reconcile",
        )
        await self.jc.send_result(*result.message())
