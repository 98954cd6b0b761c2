"""Handlers of the real pipelines' agent steps: copy, probe, qr, group, booking, publish.

Each is ``async (ctx, request) -> StepOutput``; CPU and file work runs in the step executor, never
on the event loop. Permanent problems (a file that is not a video) raise PermanentStepError.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agents.jobs import kinds, landing
from agents.jobs import publish as publishing
from agents.jobs import sessions as jump_sessions
from agents.jobs.context import JobContext
from agents.jobs.kinds import after_copy
from agents.jobs.landing import request_again
from agents.jobs.render import RenderCheck
from agents.media.probe import MediaInfo, ProbeError, probe
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.handlers import Handlers, StepContext, StepOutput
from agents.qr.decode import QrResult, decode_clip
from storage import media
from streams import records

logger = logging.getLogger(__name__)


def _int(request: records.StepRequest, key: str) -> int:
    value = (request.input or {}).get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentStepError(f"step input {key!r} must be an integer, got {value!r}")
    return value


def _str(request: records.StepRequest, key: str) -> str:
    value = (request.input or {}).get(key)
    if not isinstance(value, str) or not value:
        raise PermanentStepError(f"step input {key!r} must be a non-empty string")
    return value


async def _file(jc: JobContext, file_id: int) -> media.FileRow:
    async with jc.engine.connect() as conn:
        rows = await media.load_files(conn, [file_id])
    if not rows:
        raise PermanentStepError(f"file {file_id} is not in the ledger")
    return rows[0]


def _stored(jc: JobContext, row: media.FileRow) -> Path:
    if row.status != "imported" or not row.stored_path:
        raise RetryableStepError(f"file {row.id} is not imported yet ({row.status})")
    return jc.settings.share_root / row.stored_path


def probe_facts(info: MediaInfo) -> media.ProbeFacts:
    return media.ProbeFacts(
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
        fps=info.fps,
        codec=info.video_codec,
        has_audio=info.has_audio,
        creation_time=info.creation_time,
    )


def qr_scan(result: QrResult) -> media.QrScan:
    booking = result.booking
    return media.QrScan(
        status=str(result.status),
        payload=result.payload,
        booking_id=booking.booking_id if booking else None,
        passenger=booking.passenger if booking else None,
        product=booking.product if booking else None,
        frame_s=result.frame_time_s,
        decoder=result.decoder,
        reason=result.reason,
        elapsed_ms=result.elapsed_ms,
    )


def make_handlers(jc: JobContext, handlers: Handlers) -> None:
    """Register the real step kinds with their handlers."""

    async def copy(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = _int(request, "file_id")
        qr = bool((request.input or {}).get("qr"))
        row = await _file(jc, file_id)
        if row.status == "imported":
            return StepOutput(
                {"file_id": file_id, "stored_path": row.stored_path}, spawn=after_copy(file_id, qr)
            )
        if row.status in ("failed", "listed") or request.attempt > 1:
            await request_again(jc, row)
            ctx.log(f"copy of {row.path} requested again from the detector")
        return StepOutput(waiting=f"waiting for the detector to copy {row.path} ({row.status})")

    async def probe_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = _int(request, "file_id")
        path = _stored(jc, await _file(jc, file_id))
        try:
            info = await ctx.run_blocking(probe, path)
        except ProbeError as exc:
            # recorded first: grouping and the render go on without this clip, and say so
            async with jc.engine.begin() as conn:
                await media.save_probe_error(conn, file_id, f"not a readable video: {exc}")
            raise PermanentStepError(f"{path.name} is not a readable video: {exc}") from exc
        async with jc.engine.begin() as conn:
            await media.save_probe(conn, file_id, probe_facts(info))
        return StepOutput(
            {
                "duration_s": info.duration_s,
                "width": info.width,
                "height": info.height,
                "fps": info.fps,
                "has_audio": info.has_audio,
                "codec": info.video_codec,
                "creation_time": info.creation_time.isoformat() if info.creation_time else None,
            }
        )

    async def qr_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = _int(request, "file_id")
        path = _stored(jc, await _file(jc, file_id))
        result = await ctx.run_blocking(decode_clip, path, jc.qr)
        async with jc.engine.begin() as conn:
            await media.save_qr(conn, file_id, qr_scan(result))
        ctx.log(
            f"qr {result.status}: {result.reason or result.decoder} "
            f"({result.frames_decoded} frames, {result.elapsed_ms:.0f} ms)"
        )
        booking = result.booking
        return StepOutput(
            {
                "status": str(result.status),
                "booking_id": booking.booking_id if booking else None,
                "passenger": booking.passenger if booking else None,
                "frame_s": result.frame_time_s,
                "decoder": result.decoder,
                "reason": result.reason,
            }
        )

    async def group(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        card_id = _str(request, "card_id")
        ids = (request.input or {}).get("file_ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise PermanentStepError("step input 'file_ids' must be a list of integers")
        await _decode_outstanding(jc, ctx, ids)
        started = await jump_sessions.group_and_start(jc, card_id, ids)
        for line in started.log:
            ctx.log(line)
        return StepOutput({"sessions": started.summary})

    async def booking(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        key = _str(request, "session")
        async with jc.engine.connect() as conn:
            session = await media.load_session(conn, key)
        if session is None:
            raise PermanentStepError(f"no jump session {key!r}")
        if session.booking_id and session.status in ("decoded", "assigned"):
            return StepOutput(
                {"booking_id": session.booking_id, "passenger": session.passenger or ""}
            )
        why = session.review_reason or (
            "the QR clip could not be read"
            if session.status == "needs_review"
            else "the footage came before any QR clip"
        )
        return StepOutput(waiting=f"needs a booking: {why}; assign one on the dashboard")

    async def publish(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        return await publishing.publish(jc, ctx, request)  # the rules: agents/jobs/publish.py

    handlers.add(kinds.COPY, copy)
    handlers.add(kinds.PROBE, probe_step)
    handlers.add(kinds.QR, qr_step)
    handlers.add(kinds.GROUP, group)
    handlers.add(kinds.BOOKING, booking)
    handlers.add(kinds.RENDER)
    handlers.add(kinds.PUBLISH, publish)

    # what the reconciler re-derives from PostgreSQL for these pipelines (lost messages)

    async def landed() -> int:
        return await landing.reconcile_landed(jc)

    async def requested() -> int:
        return await landing.reconcile_requested(jc)

    async def groups() -> int:
        return await jump_sessions.reconcile_groups(jc)

    handlers.registry.add_check("copies-landed", landed)
    handlers.registry.add_check("copies-requested", requested)
    handlers.registry.add_check("groups", groups)
    handlers.registry.add_check("renders", RenderCheck(jc))


async def _decode_outstanding(jc: JobContext, ctx: StepContext, ids: list[int]) -> None:
    """Decode the listing's QR candidates that are imported but were never decoded.

    A listing's `group` waits only for its own `qr:` steps; a candidate imported under an
    earlier listing of the card (its landing lost with the broker, its decode not run yet)
    would otherwise count as one the decoder failed on, and its passenger's footage would go
    to review. Reading the clip here costs ~0.2 s; the grouping then sees the truth."""
    async with jc.engine.connect() as conn:
        rows = [
            r
            for r in await media.load_files(conn, ids)
            if r.kind == "qr_candidate"
            and r.status == "imported"
            and r.stored_path
            and not r.probe_error
            and r.session_key is None
        ]
        scanned = await media.load_qr(conn, [r.id for r in rows])
    for r in rows:
        if r.id in scanned:
            continue
        path = jc.settings.share_root / str(r.stored_path)
        result = await ctx.run_blocking(decode_clip, path, jc.qr)
        async with jc.engine.begin() as conn:
            await media.save_qr(conn, r.id, qr_scan(result))
        ctx.log(f"{r.path}: decoded before grouping, its own decode had not run ({result.status})")
        logger.warning("file %d: decoded by the group step (its qr step had not run)", r.id)
