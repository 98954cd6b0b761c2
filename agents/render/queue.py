"""The render queue on Redis (saq): the job function and the worker's settings.

A job's kwargs carry the footage facts (and each clip's ledger identity), the jump session, its
output name, passenger name and branding; the worker's `RenderWorkerConfig` decides where footage
may be read from and where renders go, so a payload can never point the worker at an arbitrary
path (the output name must be a plain file name). Permanent failures (corrupt input, bad
payload, an output of another session in the way) fail the job once; transient ones (stall,
killed FFmpeg) are retried by saq; a worker killed mid-render stops heart-beating, saq's sweep
re-enqueues the job and the re-run produces exactly one output.

The process that runs it is ``skyreel render-worker`` (agents/render/worker.py); the dispatcher
that enqueues is agents/jobs/render.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from saq import Queue
from saq.types import Context, SettingsDict

from agents.render.branding import Branding, BrandingError
from agents.render.contract import RenderJob
from agents.render.errors import RenderError
from agents.render.identity import ManifestError, fingerprint, manifest_path, read_manifest
from agents.render.job import SessionOutput, render_inputs, render_session
from agents.render.music import Music
from agents.render.plan import DEFAULT_TUNING, Clip, Cut, RenderTuning

if TYPE_CHECKING:
    from saq.job import Job
    from saq.types import PartialTimersDict

logger = logging.getLogger(__name__)

RENDER_QUEUE = "skyreel-render"
RENDER_FUNCTION = "render_job"
_CONFIG_KEY = "render_config"


@dataclass(frozen=True)
class RenderWorkerConfig:
    """Settings of one render worker process (built once in main and passed down)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = RENDER_QUEUE
    concurrency: int = 1  # FFmpeg already uses every core; more only on big machines
    output_root: Path = Path("renders")  # the staging area `publish` moves videos out of
    # the published outputs: a session's verified output of the same inputs there is reused
    published_root: Path | None = None
    media_roots: tuple[Path, ...] = ()  # footage and branding files must live under one of these
    stall_timeout_s: float = 60.0
    job_timeout_s: int = 3 * 3600
    heartbeat_s: int = 30  # a job not touched for this long is swept and retried elsewhere
    retries: int = 3
    sweep_interval_s: int = 10
    progress_interval_s: float = 1.0
    stale_partial_s: float = 600.0
    ffmpeg: str | None = None
    tuning: RenderTuning = DEFAULT_TUNING  # decoder threads, frame dropping (plan.RenderTuning)
    encode_threads: int = 0  # x264 threads; 0: x264's choice


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


@dataclass(frozen=True)
class RenderRequest:
    clips: list[Clip]
    branding: Branding
    passenger_name: str
    output: SessionOutput
    cuts: list[Cut] | None = None
    music: Music | None = None


def decode_request(
    request: RenderJob | Mapping[str, object], config: RenderWorkerConfig
) -> RenderRequest:
    """Validate a job payload; anything wrong with it is permanent."""
    try:
        job = request if isinstance(request, RenderJob) else RenderJob.model_validate(request)
        clips = [
            Clip(
                path=Path(c.path),
                duration=c.duration,
                width=c.width,
                height=c.height,
                fps=c.fps,
                has_audio=c.has_audio,
                rotation=c.rotation,
            )
            for c in job.clips
        ]
        identities = tuple(
            {"id": c.id, "size": c.size, "sha256": c.sha256} for c in job.clips if c.id is not None
        )
        cuts = (
            None if job.cuts is None else [Cut(c.clip, c.start, c.end, c.speed) for c in job.cuts]
        )
        music = (
            None
            if job.music is None
            else Music(Path(job.music.path), job.music.level_db, job.music.fade_in_s,
                       job.music.fade_out_s)
        )  # fmt: skip
        branding = Branding.from_mapping(job.branding)
        passenger = job.passenger_name
        output = SessionOutput(
            session_key=job.session_key,
            name=job.output_name,
            execution_id=job.execution_id,
            clip_inputs=identities if len(identities) == len(clips) else (),
        )
    except (KeyError, TypeError, ValueError, BrandingError) as exc:
        raise RenderError(f"bad render request: {exc!r}") from exc
    if config.media_roots:
        files = (
            [c.path for c in clips]
            + [p for p in (branding.intro_path, branding.logo_path, branding.title_font) if p]
            + ([music.path] if music is not None else [])
        )
        outside = [p.name for p in files if not _inside(p, config.media_roots)]
        if outside:
            raise RenderError(f"render request names files outside the media roots: {outside}")
    return RenderRequest(clips, branding, passenger, output, cuts, music)


def _job(ctx: Context) -> Job:
    return ctx["job"]


async def render_job(ctx: Context, *, request: dict[str, object]) -> dict[str, object]:
    """saq job: render one session; progress and a structured error go to the job's meta."""
    config = cast(RenderWorkerConfig, ctx[_CONFIG_KEY])  # type: ignore[literal-required]
    job = _job(ctx)
    last_report = 0.0

    async def report(fraction: float) -> None:
        nonlocal last_report
        now = time.monotonic()
        if fraction < 1.0 and now - last_report < config.progress_interval_s:
            return
        last_report = now
        await job.update(progress=round(fraction, 4), meta={**job.meta, "stage": "rendering"})

    async def heartbeat() -> None:
        # Keeps a slow-but-alive render from being swept; stalls are FFmpeg's watchdog's job.
        while True:
            await asyncio.sleep(max(1.0, config.heartbeat_s / 3))
            await job.update()

    beat = asyncio.create_task(heartbeat())
    try:
        job_request = decode_request(request, config)
        out = await render_session(
            job_request.clips,
            job_request.branding,
            output=job_request.output,
            passenger_name=job_request.passenger_name,
            output_root=config.output_root,
            published_root=config.published_root,
            on_progress=report,
            stall_timeout=config.stall_timeout_s,
            stale_partial_s=config.stale_partial_s,
            ffmpeg=config.ffmpeg,
            cuts=job_request.cuts,
            music=job_request.music,
            tuning=config.tuning,
            encode_threads=config.encode_threads,
        )
    except RenderError as exc:
        logger.warning("render job %s failed (%s): %s", job.key, type(exc).__name__, exc.message)
        if not exc.retryable:
            job.retries = job.attempts  # saq then finishes it as failed: no retry storm
        with contextlib.suppress(Exception):
            await job.update(meta={**job.meta, "stage": "failed", "error": exc.to_dict()})
        raise
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    return {
        "video": str(out.video),
        "poster": str(out.poster),
        "manifest": str(out.manifest),
        "session_key": job_request.output.session_key,
        "output_name": job_request.output.name,
        "fingerprint": out.fingerprint,
        "duration": out.duration,
        "skipped": out.skipped,
        "elapsed_s": round(out.elapsed_s, 3),
    }


def job_key(execution_id: int, step: str, attempt: int) -> str:
    """The saq job key of one attempt of a render step: a redelivery enqueues nothing twice."""
    return f"{execution_id}:{step}:{attempt}"


def recovered_output(
    request: RenderJob | Mapping[str, object], roots: Sequence[Path]
) -> dict[str, object] | None:
    """The result `render_job` gave (or would give) for `request`, re-derived from an output
    manifest under one of `roots` (staging, then published) that names this session and the
    same input fingerprint, with its video and poster in place; None when there is none.
    Blocking (reads files): run it in a thread. How a render whose result was lost is
    published without rendering it again."""
    try:
        job = decode_request(request, RenderWorkerConfig())
    except RenderError:
        return None
    out = job.output
    fp = fingerprint(
        render_inputs(job.clips, job.branding, job.passenger_name, out, job.cuts, job.music)
    )
    for root in roots:
        folder = root / out.name
        path = manifest_path(folder, out.name)
        try:
            found = read_manifest(path)
        except ManifestError:
            continue
        if found is None or found.session_key != out.session_key or found.fingerprint != fp:
            continue
        video, poster = found.files.get("video"), found.files.get("poster")
        if video is None or poster is None:
            continue
        if not (video.same_size(folder / video.name) and poster.same_size(folder / poster.name)):
            continue
        return {
            "video": str(folder / video.name),
            "poster": str(folder / poster.name),
            "manifest": str(path),
            "session_key": out.session_key,
            "output_name": out.name,
            "fingerprint": fp,
            "skipped": True,
            "recovered": True,
        }
    return None


def make_queue(config: RenderWorkerConfig) -> Queue:
    return Queue.from_url(config.redis_url, name=config.queue_name)


def worker_settings(config: RenderWorkerConfig, queue: Queue | None = None) -> SettingsDict:
    """saq worker settings: the render function, concurrency and a fast sweep of dead workers."""

    async def startup(ctx: Context) -> None:
        ctx[_CONFIG_KEY] = config  # type: ignore[literal-required]
        config.output_root.mkdir(parents=True, exist_ok=True)

    return {
        "queue": queue or make_queue(config),
        "functions": [(RENDER_FUNCTION, render_job)],
        "concurrency": config.concurrency,
        "startup": startup,
        "timers": cast("PartialTimersDict", {"sweep": config.sweep_interval_s}),
    }
