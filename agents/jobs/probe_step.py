"""The `probe` step: read a copied clip's duration, size, codec and capture time."""

from __future__ import annotations

from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.step_input import int_input, ledger_file, stored
from agents.media.probe import MediaInfo, ProbeError, probe
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from storage import media
from streams import records

KIND = kinds.PROBE


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


def handler(jc: JobContext) -> Handler:
    async def probe_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = int_input(request, "file_id")
        path = stored(jc, await ledger_file(jc, file_id))
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

    return probe_step
