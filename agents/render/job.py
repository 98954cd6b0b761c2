"""Render one passenger's video safely: plan, run FFmpeg to a temp name, verify, rename atomically.

Re-running a job is safe: if the final video already exists and probes right nothing is rendered
again, stale partial files of the same output are removed, and the final name only ever appears
through `os.replace` after FFmpeg succeeded and PyAV confirmed duration, resolution and streams.
Output names come from the booking id and the sanitised passenger name, never from a payload path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from agents.render.branding import Branding, find_font
from agents.render.errors import RenderError, TransientRenderError
from agents.render.ffmpeg import ProgressCallback, run_ffmpeg
from agents.render.plan import Clip, PlanError, RenderTargets, build_plan

logger = logging.getLogger(__name__)

DURATION_TOLERANCE_S = 0.2
_BOOKING_OK = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RenderOutput:
    video: Path
    poster: Path
    duration: float
    skipped: bool  # True: a verified output already existed (idempotent re-run)
    elapsed_s: float
    ffmpeg_tail: str = ""


def _slug(text: str, *, limit: int) -> str:
    text = unicodedata.normalize("NFKC", text)
    kept = "".join(ch if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in kept.split("-") if part)[:limit].strip("-")


def output_basename(booking_id: str, passenger_name: str) -> str:
    """`<booking>_<name>`: safe as a folder and file name on Linux, macOS and Windows shares."""
    booking = _BOOKING_OK.sub("", booking_id).strip(".")[:64]
    if not booking:
        raise RenderError(f"booking id {booking_id!r} has no usable characters")
    name = _slug(passenger_name, limit=60) or "passenger"
    # Always "<booking>_<name>": never a bare Windows device name like CON or NUL.
    return f"{booking}_{name}"


def probe_clip(path: Path) -> Clip:
    """Facts the render plan needs, read with PyAV; unreadable media is a permanent failure."""
    try:
        with av.open(str(path)) as container:
            video = next((s for s in container.streams.video), None)
            if video is None:
                raise RenderError(f"{path.name}: no video stream")
            if video.duration is not None and video.time_base is not None:
                duration = float(video.duration * video.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                raise RenderError(f"{path.name}: unknown duration")
            rate = video.average_rate or video.guessed_rate
            rotation = 0
            # PyAV exposes the display matrix only on frames; one decoded frame is cheap.
            with contextlib.suppress(av.FFmpegError, StopIteration):
                rotation = round(next(container.decode(video)).rotation) % 360
            return Clip(
                path=path,
                duration=duration,
                width=video.codec_context.width,
                height=video.codec_context.height,
                fps=float(rate) if rate else 30.0,
                has_audio=bool(container.streams.audio),
                rotation=rotation,
            )
    except FileNotFoundError as exc:
        raise RenderError(f"{path.name}: file not found") from exc
    except av.FFmpegError as exc:
        raise RenderError(f"{path.name}: cannot read media: {exc}") from exc


def check_output(path: Path, *, duration: float, width: int, height: int) -> list[str]:
    """Problems with a rendered file (empty list: it is what the plan promised)."""
    try:
        with av.open(str(path)) as container:
            problems: list[str] = []
            videos = list(container.streams.video)
            audios = list(container.streams.audio)
            if len(videos) != 1 or videos[0].codec_context.name != "h264":
                problems.append("expected one h264 video stream")
            elif (videos[0].codec_context.width, videos[0].codec_context.height) != (width, height):
                cc = videos[0].codec_context
                problems.append(f"resolution {cc.width}x{cc.height}, expected {width}x{height}")
            if len(audios) != 1 or audios[0].codec_context.name != "aac":
                problems.append("expected one aac audio stream")
            actual = (container.duration or 0) / 1_000_000
            if abs(actual - duration) > DURATION_TOLERANCE_S:
                problems.append(f"duration {actual:.3f}s, planned {duration:.3f}s")
            return problems
    except (FileNotFoundError, av.FFmpegError) as exc:
        return [f"unreadable: {exc}"]


def _remove_partials(folder: Path, names: Sequence[str], *, older_than_s: float) -> None:
    cutoff = time.time() - older_than_s
    for name in names:
        for stale in folder.glob(f".{name}.partial-*"):
            with contextlib.suppress(FileNotFoundError):
                if stale.stat().st_mtime <= cutoff:
                    stale.unlink()
                    logger.info("removed stale partial %s", stale)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def render_session(
    clips: Sequence[Clip],
    branding: Branding,
    *,
    booking_id: str,
    passenger_name: str,
    output_root: Path,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float = 60.0,
    stale_partial_s: float = 600.0,
    ffmpeg: str | None = None,
) -> RenderOutput:
    """Render into `output_root/<booking>_<name>/<booking>_<name>.mp4` (+ `.jpg` poster)."""
    started = time.monotonic()
    base = output_basename(booking_id, passenger_name)
    folder = output_root / base
    video, poster = folder / f"{base}.mp4", folder / f"{base}.jpg"
    intro = probe_clip(branding.intro_path) if branding.intro_path is not None else None
    if branding.logo_path is not None and not branding.logo_path.is_file():
        raise RenderError(f"logo {branding.logo_path.name} not found")
    font = find_font(branding.title_font) if branding.title_enabled else None

    token = uuid.uuid4().hex
    targets = RenderTargets(
        video=folder / f".{video.name}.partial-{token}",
        poster=folder / f".{poster.name}.partial-{token}",
        title_file=Path(tempfile.gettempdir()) / f"skyreel-title-{token}.txt",
    )
    try:
        plan = build_plan(clips, branding, passenger_name, targets, intro=intro, font=font)
    except PlanError as exc:
        raise RenderError(str(exc)) from exc
    for warning in plan.warnings:
        logger.warning("render %s: %s", base, warning)
    size = {"width": plan.width, "height": plan.height}

    if poster.is_file() and not check_output(video, duration=plan.total_duration, **size):
        logger.info("render %s: verified output already exists, nothing to do", base)
        _remove_partials(folder, (video.name, poster.name), older_than_s=stale_partial_s)
        return RenderOutput(video, poster, plan.total_duration, True, time.monotonic() - started)

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransientRenderError(f"cannot create output folder: {exc}") from exc
    _remove_partials(folder, (video.name, poster.name), older_than_s=stale_partial_s)
    try:
        if plan.title_file is not None and plan.title_text is not None:
            plan.title_file.write_text(plan.title_text, encoding="utf-8")
        logger.info("render %s: %.2fs planned, %d clips", base, plan.total_duration, len(clips))
        run = await run_ffmpeg(
            plan.args,
            total_duration=plan.total_duration,
            ffmpeg=ffmpeg,
            on_progress=on_progress,
            stall_timeout=stall_timeout,
        )
        problems = check_output(targets.video, duration=plan.total_duration, **size)
        if not targets.poster.is_file():
            problems.append("no poster written")
        if problems:
            raise RenderError(
                f"render output failed its checks: {'; '.join(problems)}",
                ffmpeg_tail=run.stderr_tail,
            )
        _fsync(targets.video)
        os.replace(targets.poster, poster)  # poster first: the video's name marks completion
        os.replace(targets.video, video)
        with contextlib.suppress(OSError):
            _fsync(folder)
    finally:
        for leftover in (targets.video, targets.poster, targets.title_file):
            leftover.unlink(missing_ok=True)
    # Partials of attempts that died earlier can go now: the verified output is in place.
    _remove_partials(folder, (video.name, poster.name), older_than_s=0)
    elapsed = time.monotonic() - started
    logger.info("render %s: done in %.1fs (%s)", base, elapsed, video)
    return RenderOutput(video, poster, plan.total_duration, False, elapsed, run.stderr_tail)
