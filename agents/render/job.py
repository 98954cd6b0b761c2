"""Render one passenger's video safely: plan, run FFmpeg to a temp name, verify, rename atomically.

Re-running a job is safe: if the final video already exists and probes right nothing is rendered
again, stale partial files of the same output are removed, and the final name only ever appears
through `os.replace` after FFmpeg succeeded and PyAV confirmed duration, resolution and streams.
The output's name is the jump session's own (agents/render/identity.py), never a payload path;
a manifest beside the video says which session and which inputs made it, so a re-run reuses an
output only when it is this session's and its inputs are unchanged, and never touches another's.

A full disk (ENOSPC/EDQUOT, from FFmpeg or from our own writes) raises :class:`NoSpaceError`
after this attempt's partial files — and its output folder, if it made it and it is empty — are
removed: the render worker retries it with backoff, and the retry renders from scratch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import av

from agents.media import refs
from agents.render.branding import Branding, find_font
from agents.render.errors import NoSpaceError, RenderError, TransientRenderError, is_no_space
from agents.render.ffmpeg import ProgressCallback, run_ffmpeg
from agents.render.identity import (
    PLAN_VERSION,
    Manifest,
    ManifestError,
    file_fact,
    file_stamp,
    fingerprint,
    is_safe_name,
    manifest_path,
    read_manifest,
    write_manifest,
)
from agents.render.music import SETTING as MUSIC_SETTING
from agents.render.music import Music
from agents.render.plan import (
    DEFAULT_TUNING,
    Clip,
    Cut,
    PlanError,
    RenderTargets,
    RenderTuning,
    build_plan,
)

logger = logging.getLogger(__name__)

DURATION_TOLERANCE_S = 0.2


@dataclass(frozen=True)
class SessionOutput:
    """Whose output a render makes: the jump session, its stored output name, the execution."""

    session_key: str
    name: str
    execution_id: int | None = None
    # the ledger's identity of each clip, in order ({"id", "size", "sha256"}); empty: by file
    clip_inputs: tuple[Mapping[str, object], ...] = ()


@dataclass(frozen=True)
class RenderOutput:
    video: Path
    poster: Path
    manifest: Path
    duration: float
    skipped: bool  # True: a verified output of the same session and inputs already existed
    elapsed_s: float
    ffmpeg_tail: str = ""
    fingerprint: str = ""
    warnings: tuple[str, ...] = field(default=())


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


def _unreadable_music(path: Path, why: str) -> RenderError:
    return RenderError(
        f"the music bed {path} cannot be read ({why}): replace it or unset {MUSIC_SETTING}"
    )


def check_music(path: Path) -> None:
    """Raise a permanent RenderError unless `path` is an audio file FFmpeg can decode (reads it)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise _unreadable_music(path, "it has no audio stream")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                if frame.samples > 0:
                    return
            raise _unreadable_music(path, "it holds no sound")
    except FileNotFoundError as exc:
        raise _unreadable_music(path, "no such file") from exc
    except (av.FFmpegError, OSError) as exc:
        raise _unreadable_music(path, str(exc)) from exc


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


def sweep_staging(root: Path, *, older_than_s: float) -> int:
    """Remove render partials under the staging area that nothing has written to for
    ``older_than_s`` (a render killed with its worker, a session cancelled since), and the
    folders they leave empty. A live render writes its partial continuously, so it is never
    touched; the finished outputs and their manifests are left to publish. Returns the count."""
    removed = 0
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    for folder in (p for p in root.iterdir() if p.is_dir()):
        for stale in folder.glob(".*.partial-*"):
            with contextlib.suppress(FileNotFoundError):
                if stale.stat().st_mtime <= cutoff:
                    stale.unlink()
                    removed += 1
                    logger.info("removed orphaned render partial %s", stale)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
    return removed


def _os_failure(what: str, exc: OSError) -> TransientRenderError:
    if is_no_space(exc):
        return NoSpaceError(f"{what}: the disk is full ({exc})")
    return TransientRenderError(f"{what}: {exc}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def render_inputs(
    clips: Sequence[Clip],
    branding: Branding,
    passenger_name: str,
    output: SessionOutput,
    cuts: Sequence[Cut] | None = None,
    music: Music | None = None,
) -> dict[str, object]:
    """Everything that decides the rendered bytes (hashed into the manifest's fingerprint).

    The edit (and its music bed) is in it only when there is one, so a whole-clips render keeps
    its fingerprint."""
    if output.clip_inputs:
        clip_inputs: list[object] = [dict(c) for c in output.clip_inputs]
    else:
        clip_inputs = [{"name": c.path.name, "size": file_stamp(c.path)} for c in clips]
    inputs: dict[str, object] = {
        "plan": PLAN_VERSION,
        "clips": clip_inputs,
        "branding": branding.to_mapping(),
        "branding_files": {
            "intro": file_stamp(branding.intro_path),
            "logo": file_stamp(branding.logo_path),
            "font": file_stamp(branding.title_font),
        },
        "title": passenger_name if branding.title_enabled else "",
    }
    if cuts is not None:
        inputs["cuts"] = [[c.clip, c.start, c.end, c.speed] for c in cuts]
    if music is not None:
        inputs["music"] = {
            "name": music.path.name,
            "file": file_stamp(music.path),
            "level_db": music.level_db,
            "fade": [music.fade_in_s, music.fade_out_s],
        }
    return inputs


def owned_manifest(folder: Path, name: str, session_key: str) -> Manifest | None:
    """The manifest of `folder`'s output if it is this session's (None: there is none).

    Another session's output, or one whose manifest cannot be read, is a permanent error: it is
    never reused and never overwritten.
    """
    path = manifest_path(folder, name)
    try:
        existing = read_manifest(path)
    except ManifestError as exc:
        raise RenderError(f"output {name}: {exc}; not touching it") from exc
    if existing is not None and existing.session_key != session_key:
        raise RenderError(
            f"output {name} belongs to session {existing.session_key!r}, "
            f"not {session_key!r}; not touching it"
        )
    return existing


def _reusable(
    folder: Path, mine: Manifest, *, duration: float, width: int, height: int
) -> Manifest | None:
    """This session's verified output of the same inputs in `folder`, if there is one."""
    existing = owned_manifest(folder, mine.output_name, mine.session_key)
    if existing is None or existing.fingerprint != mine.fingerprint:
        return None
    video, poster = existing.files.get("video"), existing.files.get("poster")
    if video is None or poster is None:
        return None
    if not (video.same_size(folder / video.name) and poster.same_size(folder / poster.name)):
        return None
    problems = check_output(folder / video.name, duration=duration, width=width, height=height)
    return existing if not problems else None


def with_reference_patterns(clips: Sequence[Clip], out_fps: float) -> list[Clip]:
    """The clips, each with `half_skippable` read from its first packets (agents/media/refs.py)
    where it could matter: a clip with at least twice the output's frame rate."""
    return [
        replace(c, half_skippable=refs.can_skip_half(c.path)) if c.fps >= 2 * out_fps - 0.01 else c
        for c in clips
    ]


async def render_session(
    clips: Sequence[Clip],
    branding: Branding,
    *,
    output: SessionOutput,
    passenger_name: str,
    output_root: Path,
    published_root: Path | None = None,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float = 60.0,
    stale_partial_s: float = 600.0,
    ffmpeg: str | None = None,
    cuts: Sequence[Cut] | None = None,
    music: Music | None = None,
    tuning: RenderTuning = DEFAULT_TUNING,
    encode_threads: int = 0,
) -> RenderOutput:
    """Render into `output_root/<name>/<name>.mp4` (+ `.jpg` poster, `.json` manifest).

    `tuning` and `encode_threads` (x264's threads, 0: its choice) are the render worker's: how
    the machine is used, not what the video shows (plan.RenderTuning).

    Nothing is rendered when `output_root` (staging) or `published_root` already holds this
    session's verified output of the same inputs; the result then points at that output.
    """
    started = time.monotonic()
    name = output.name
    if not is_safe_name(name):
        raise RenderError(f"output name {name!r} is not a safe file name")
    folder = output_root / name
    video, poster = folder / f"{name}.mp4", folder / f"{name}.jpg"
    intro = probe_clip(branding.intro_path) if branding.intro_path is not None else None
    if branding.logo_path is not None and not branding.logo_path.is_file():
        raise RenderError(f"logo {branding.logo_path.name} not found")
    font = find_font(branding.title_font) if branding.title_enabled else None
    if music is not None:  # an unreadable music bed fails the render, never renders silently
        await asyncio.to_thread(check_music, music.path)

    token = uuid.uuid4().hex
    targets = RenderTargets(
        video=folder / f".{video.name}.partial-{token}",
        poster=folder / f".{poster.name}.partial-{token}",
        title_file=Path(tempfile.gettempdir()) / f"skyreel-title-{token}.txt",
    )
    if tuning.skip_nonref:
        clips = await asyncio.to_thread(with_reference_patterns, clips, branding.fps)
    try:
        plan = build_plan(
            clips, branding, passenger_name, targets, intro=intro, font=font, cuts=cuts,
            music=music, tuning=tuning, threads=encode_threads,
        )  # fmt: skip
    except PlanError as exc:
        raise RenderError(str(exc)) from exc
    for warning in plan.warnings:
        logger.warning("render %s: %s", name, warning)
    size = {"width": plan.width, "height": plan.height}
    inputs = render_inputs(clips, branding, passenger_name, output, cuts, music)
    mine = Manifest(output.session_key, name, fingerprint(inputs), output.execution_id, {}, inputs)

    for root in (output_root, published_root):
        if root is None:
            continue
        found = _reusable(root / name, mine, duration=plan.total_duration, **size)
        if found is not None:
            where = root / name
            logger.info("render %s: this session's output exists in %s, reused", name, where)
            _remove_partials(folder, (video.name, poster.name), older_than_s=stale_partial_s)
            return RenderOutput(
                where / found.files["video"].name,
                where / found.files["poster"].name,
                manifest_path(where, name),
                plan.total_duration,
                True,
                time.monotonic() - started,
                fingerprint=mine.fingerprint,
                warnings=tuple(plan.warnings),
            )

    made_folder = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_failure("cannot create output folder", exc) from exc
    _remove_partials(folder, (video.name, poster.name), older_than_s=stale_partial_s)
    done = False
    try:
        if plan.title_file is not None and plan.title_text is not None:
            plan.title_file.write_text(plan.title_text, encoding="utf-8")
        logger.info("render %s: %.2fs planned, %d clips", name, plan.total_duration, len(clips))
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
        facts = {
            "video": await asyncio.to_thread(file_fact, targets.video, name=video.name),
            "poster": await asyncio.to_thread(file_fact, targets.poster, name=poster.name),
        }
        owned_manifest(folder, name, output.session_key)  # re-checked just before replacing
        os.replace(targets.poster, poster)
        os.replace(targets.video, video)
        # the manifest last: it names these bytes, so a crash before it makes the next run
        # render again instead of trusting a video of older inputs
        made = Manifest(
            output.session_key, name, mine.fingerprint, output.execution_id, facts, inputs
        )
        write_manifest(manifest_path(folder, name), made)
        with contextlib.suppress(OSError):
            _fsync(folder)
        done = True
    except OSError as exc:
        raise _os_failure("cannot write the render output", exc) from exc
    finally:
        for leftover in (targets.video, targets.poster, targets.title_file):
            leftover.unlink(missing_ok=True)
        if not done and made_folder:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing of a finished output is ever removed
    # Partials of attempts that died earlier can go now: the verified output is in place.
    _remove_partials(folder, (video.name, poster.name), older_than_s=0)
    elapsed = time.monotonic() - started
    logger.info("render %s: done in %.1fs (%s)", name, elapsed, video)
    return RenderOutput(
        video,
        poster,
        manifest_path(folder, name),
        plan.total_duration,
        False,
        elapsed,
        run.stderr_tail,
        mine.fingerprint,
        tuple(plan.warnings),
    )
