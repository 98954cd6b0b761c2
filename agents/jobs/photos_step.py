"""The `photos` step (issue 16): the best stills of a jump, watermarked, with a contact sheet.

In a jump's pipeline only when its booking bought photos (agents/deliverables.py, decided when
the pipeline is made: agents/jobs/kinds.py `jump_steps`); it runs after the `booking` (its files
carry the session's output name) and, with the edit on, after `phases` whatever became of it
(`?phases`: without marks the stills are picked from the whole footage). The product is read
again when the step runs: a session whose product no longer includes photos finishes the step as
skipped ("not bought"), so a retry or replay is always safe.

The clips are the render's (agents/jobs/render.py `choose_footage`: an unreadable clip is left
out, one not copied or probed yet makes the step retry). Output, read by the passenger page:
``{"photos": [paths], "contact_sheet": path, "count": n, "picked_from": "freefall+canopy" |
"all footage", "warnings": [...]}``, paths relative to `output_dir`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from agents.deliverables import deliverables_of
from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.render import choose_footage, session_output_name
from agents.jobs.step_input import str_input
from agents.photos.extract import FrameReadError, timeline
from agents.photos.make import NoPhotos, PhotoJob, make_photos
from agents.photos.output import PhotoOwnershipError
from agents.photos.select import SelectSettings
from agents.photos.watermark import WatermarkError, load
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from agents.render.branding import Branding, BrandingError
from agents.render.default_branding import job_branding
from agents.render.identity import file_stamp
from storage import media
from storage import pipeline as repo
from streams import records

logger = logging.getLogger(__name__)

KIND = kinds.PHOTOS


def marks_of(output: object) -> tuple[dict[str, float | None], list[str]]:
    """The exit/opening/landing times of a `phases` output, and what to say about them."""
    if not isinstance(output, Mapping):
        return {}, ["no jump phases (no phases step succeeded): photos picked from all footage"]
    raw = output.get("marks")
    marks: dict[str, float | None] = {}
    if isinstance(raw, Mapping):
        for kind in ("exit", "opening", "landing"):
            m = raw.get(kind)
            t = m.get("t") if isinstance(m, Mapping) else None
            marks[kind] = float(t) if isinstance(t, int | float) else None
    notes = []
    if output.get("needs_review") and marks.get("exit") is not None:
        notes.append("the jump's phases need review: photos picked from the detected ones")
    return marks, notes


async def _job(
    jc: JobContext, conn: AsyncConnection, key: str, execution_id: int | None
) -> tuple[PhotoJob, list[str]] | StepOutput:
    session = await media.load_session(conn, key)
    if session is None:
        raise PermanentStepError(f"no jump session {key!r}")
    bought = deliverables_of(session.product, jc.settings.default_product)
    if not bought.photos:
        return StepOutput(
            {"photos": [], "contact_sheet": None, "count": 0, "picked_from": "",
             "warnings": [f"skipped: photos not bought (product {session.product!r})"],
             "skipped": "not bought"}
        )  # fmt: skip
    if not session.booking_id:
        raise PermanentStepError(f"session {key} has no booking: assign one, then retry")
    rows = {r.id: r for r in await media.load_files(conn, session.file_ids)}
    kept, left_out, pending = choose_footage(session.file_ids, rows)
    if pending:
        raise RetryableStepError(f"waiting for every clip: {'; '.join(pending[:3])}")
    if not kept:
        raise PermanentStepError(f"session {key}: no readable clip to take photos from")
    name = session.output_name or session_output_name(session, list(rows.values()))
    name = await media.claim_output_name(conn, key, name) or name
    # the phases when the pipeline has them (the edit on), else the whole footage
    output = (
        await repo.succeeded_output(conn, execution_id, "phases")
        if execution_id is not None
        else None
    )
    marks, notes = marks_of(output) if output is not None or jc.settings.edit_jumps else ({}, [])
    try:
        # the video's watermark: the configured logo, or the one made from the dropzone's name
        branding = Branding.from_mapping(await job_branding(jc.settings))
        watermark = load(branding)
    except (BrandingError, WatermarkError) as exc:
        raise PermanentStepError(str(exc)) from exc
    clips = timeline(
        [(r.id, r.name, jc.settings.share_root / str(r.stored_path), float(r.duration_s or 0))
         for r in kept]
    )  # fmt: skip
    job = PhotoJob(
        session_key=key,
        output_name=name,
        clips=clips,
        marks=marks,
        select=SelectSettings(
            count=jc.settings.photos_count, min_spacing_s=jc.settings.photos_min_spacing_s
        ),
        watermark=watermark,
        execution_id=execution_id,
        inputs={
            "clips": [[r.id, r.size, r.content_hash] for r in kept],
            "count": jc.settings.photos_count,
            "spacing": jc.settings.photos_min_spacing_s,
            "logo": file_stamp(branding.logo_path),
        },
    )
    return job, [*left_out, *notes]


def handler(jc: JobContext) -> Handler:
    async def photos(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        key = str_input(request, "session")
        async with jc.engine.begin() as conn:
            job = await _job(jc, conn, key, request.execution_id)
        if isinstance(job, StepOutput):
            ctx.log(f"session {key}: photos not bought, nothing to make")
            return job
        photo_job, notes = job
        try:
            out = await ctx.run_blocking(make_photos, photo_job, jc.settings.output_dir)
        except (NoPhotos, FrameReadError) as exc:
            raise PermanentStepError(f"session {key}: {exc.reason}") from exc
        except PhotoOwnershipError as exc:
            raise PermanentStepError(exc.reason) from exc
        except OSError as exc:
            raise RetryableStepError(f"session {key}: photos not written ({exc})") from exc
        made = out["warnings"]
        warnings = [*notes, *(made if isinstance(made, list) else [])]
        out["warnings"] = warnings
        for w in warnings:
            ctx.log(w, "warning")
        ctx.log(f"{out['count']} photos from {out['picked_from']}")
        return StepOutput(out)

    return photos
