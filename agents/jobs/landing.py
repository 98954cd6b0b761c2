"""When a copy lands (or fails), finish the ``copy:<file>`` steps that wait for it.

Ingest calls :func:`copy_landed` after it recorded a copy result. A RUNNING (waiting) copy step
gets its result for its current attempt; a FAILED one (the card was pulled earlier) is retried,
and its handler then finds the file imported. A READY step needs nothing: its handler will see
the file's status when it runs. Both ways are idempotent, so a redelivered result is harmless.

:func:`reconcile_landed` is the same told from PostgreSQL, for landings whose message was lost
(the broker died between the import and the result): every pass of the reconciler finds the
copy steps still running or failed whose file is imported, and tells them exactly what the
landing would have. :func:`reconcile_requested` re-sends the copy requests of files a copy step
still waits for that stayed `requested` (the request itself may have died with the broker,
and the detector's socket stayed up, so nothing re-sent it on connect).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agents.jobs.context import JobContext
from agents.jobs.kinds import after_copy
from agents.pipeline import orchestrator
from agents.pipeline.errors import PermanentStepError
from storage import imports, media
from storage.enums import StepStatus
from streams import records

logger = logging.getLogger(__name__)

#: A file imported this long ago whose copy step was not told has lost its landing message.
LANDED_GRACE_S = 3.0
#: A file requested this long ago that is neither copying nor imported, while a copy step
#: waits for it, may have lost its copy request with the broker: it is requested again (the
#: detector ignores a request it already has queued or running).
REQUEST_AGAIN_S = 30.0


async def copy_landed(ctx: JobContext, file_id: int, *, imported: bool, reason: str = "") -> None:
    async with ctx.engine.connect() as conn:
        steps = await media.copy_steps_of(conn, file_id)
    await _tell(ctx, steps, imported=imported, reason=reason, actor="system:copy-landed")
    if steps:
        logger.info(
            "file %d %s: %d copy step(s) told",
            file_id,
            "landed" if imported else "failed",
            len(steps),
        )


async def _tell(
    ctx: JobContext,
    steps: Sequence[media.LandedCopy],
    *,
    imported: bool,
    reason: str = "",
    actor: str,
) -> None:
    for s in steps:
        name = f"copy:{s.file_id}"
        if s.status == StepStatus.FAILED:
            if imported:
                await orchestrator.retry(
                    ctx.engine, ctx.emitter, s.execution_id, step=name, actor=actor
                )
            continue
        if imported:
            result = records.StepResult(
                execution_id=s.execution_id,
                step=name,
                attempt=s.attempt,
                status="succeeded",
                output={"file_id": s.file_id, "stored_path": s.stored_path},
                worker="ingest",
                spawn=after_copy(s.file_id, s.qr, s.group),
            )
        else:
            result = records.StepResult(
                execution_id=s.execution_id,
                step=name,
                attempt=s.attempt,
                status="failed",
                error=f"copy failed: {reason}"[:4000],
                retryable=False,
                worker="ingest",
            )
        await ctx.send_result(*result.message())


async def reconcile_landed(ctx: JobContext, grace_s: float = LANDED_GRACE_S) -> int:
    """Tell the copy steps whose file is imported but who never heard (a lost landing)."""
    async with ctx.engine.connect() as conn:
        steps = await media.landed_copy_steps(conn, grace_s)
    if not steps:
        return 0
    await _tell(ctx, steps, imported=True, actor="system:reconcile")
    for s in steps:
        logger.warning(
            "execution %d: copy:%d (%s) was never told its file landed; told now",
            s.execution_id,
            s.file_id,
            s.status,
        )
    return len(steps)


async def reconcile_requested(ctx: JobContext, after_s: float = REQUEST_AGAIN_S) -> int:
    """Request again the files waiting copy steps wait for that stayed `requested`."""
    async with ctx.engine.connect() as conn:
        ids = await media.stale_requests(conn, after_s)
        rows = await media.load_files(conn, ids)
    for row in rows:
        try:
            await request_again(ctx, row)
        except PermanentStepError as exc:
            logger.warning("file %d not requested again: %s", row.id, exc.reason)
            continue
        logger.warning("file %d (%s) still not copied: requested again", row.id, row.path)
    return len(rows)


async def request_again(jc: JobContext, row: media.FileRow) -> None:
    """Ask the card's detector for the file again (it is sent on connect if offline now)."""
    async with jc.engine.begin() as conn:
        detector = await media.detector_of(conn, row.id)
        if not detector:
            raise PermanentStepError(f"file {row.id} has no detector to copy it")
        await imports.mark_requested(conn, str(detector), [row.id])
    planned = imports.PlannedCopy(
        row.id,
        row.path,
        row.size,
        row.mtime_ms,
        imports.destination_for(row.card_id, row.id, row.name),
        imports.priority_for(row.kind),
    )
    request = records.CopyRequest.for_file(detector, row.card_id, planned)
    await jc.send_copy_request(str(detector).encode(), records.encode(request))
