"""The `group` step: group a card's listing into jump sessions and start their pipelines.

`group:<file>` (issue 18, spawned beside a QR candidate's probe and decode) is the same step
kind run as soon as that clip is read: it groups the listing again and starts only the sessions
no clip still being read can change; `group`, once every clip is read, groups what is left."""

from __future__ import annotations

import logging

from agents.jobs import kinds
from agents.jobs import sessions as jump_sessions
from agents.jobs.context import JobContext
from agents.jobs.qr_step import qr_scan
from agents.jobs.step_input import str_input
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from agents.qr.decode import decode_clip
from storage import media
from storage import pipeline as repo
from storage.enums import FileKind, FileStatus
from streams import records

logger = logging.getLogger(__name__)

KIND = kinds.GROUP


def handler(jc: JobContext) -> Handler:
    async def group(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        if (request.input or {}).get("partial"):
            return await _partial(jc, ctx)
        card_id = str_input(request, "card_id")
        ids = (request.input or {}).get("file_ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise PermanentStepError("step input 'file_ids' must be a list of integers")
        await _decode_outstanding(jc, ctx, ids)
        started = await jump_sessions.group_and_start(jc, card_id, ids)
        for line in started.log:
            ctx.log(line)
        return StepOutput({"sessions": started.summary})

    return group


async def _partial(jc: JobContext, ctx: StepContext) -> StepOutput:
    """Start the sessions closed so far; the listing is the one the execution's `group` reads."""
    async with jc.engine.connect() as conn:
        found = await repo.load_steps(conn, ctx.execution_id, ["group"])
    listing = found[0].input if found else {}
    card_id, ids = listing.get("card_id"), listing.get("file_ids")
    if not isinstance(card_id, str) or not isinstance(ids, list):
        raise PermanentStepError("no `group` step with a card and a listing in this execution")
    if not all(isinstance(i, int) for i in ids):
        raise PermanentStepError("the `group` step's 'file_ids' must be a list of integers")
    started = await jump_sessions.group_and_start(jc, card_id, ids, partial=True)
    for line in started.log:
        ctx.log(line)
    return StepOutput({"sessions": started.summary, "partial": True})


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
            if r.kind == FileKind.QR_CANDIDATE
            and r.status == FileStatus.IMPORTED
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
