"""Locate FFmpeg and run it without blocking the event loop: progress, stall detection, errors.

The system `ffmpeg` is used where present, else the binary shipped by imageio-ffmpeg, so a
pip-only install renders. Progress comes from `-progress pipe:1` (out_time_us as a fraction of
the planned duration); a run whose output time does not advance for `stall_timeout` seconds is
killed. On failure the tail of FFmpeg's stderr travels in the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agents.render.errors import (
    NO_SPACE_MARKERS,
    NoSpaceError,
    RenderError,
    StallError,
    TransientRenderError,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float], Awaitable[None]]
GLOBAL_ARGS: tuple[str, ...] = (
    "-hide_banner",
    "-nostdin",
    "-nostats",
    "-loglevel",
    "warning",
    "-progress",
    "pipe:1",
    "-y",
)
# Failures that say nothing about the input: another attempt (maybe elsewhere) may succeed.
_TRANSIENT_MARKERS = ("Cannot allocate memory", "Resource temporarily")


def locate_ffmpeg() -> str:
    """Path of the FFmpeg binary: system ffmpeg on PATH, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # only needed when there is no system FFmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class FFmpegRun:
    returncode: int
    stderr_tail: str
    elapsed_s: float


def _die_with_parent() -> None:
    # A SIGKILLed render worker must not leave FFmpeg encoding an orphaned partial file.
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Progress:
    def __init__(self, now: float) -> None:
        self.out_us = -1
        self.last_advance = now
        self.ended = False


async def _read_progress(
    stream: asyncio.StreamReader,
    state: _Progress,
    total_s: float,
    on_progress: ProgressCallback | None,
) -> None:
    loop = asyncio.get_running_loop()
    async for raw in stream:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            out_us = int(value)
            if out_us <= state.out_us:
                continue
            state.out_us, state.last_advance = out_us, loop.time()
            fraction = min(1.0, out_us / 1e6 / total_s) if total_s > 0 else 0.0
        elif key == "progress" and value == "end":
            state.ended, fraction = True, 1.0
        else:
            continue
        if on_progress is not None:
            try:
                await on_progress(fraction)
            except Exception:
                # Reporting progress must never break the render itself.
                logger.warning("progress callback failed", exc_info=True)


async def _read_tail(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


async def run_ffmpeg(
    args: Sequence[str],
    *,
    total_duration: float,
    ffmpeg: str | None = None,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float = 60.0,
    tail_lines: int = 30,
) -> FFmpegRun:
    """Run FFmpeg with `args` (after the global options); raise a RenderError when it fails."""
    binary = ffmpeg or locate_ffmpeg()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        binary,
        *GLOBAL_ARGS,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    assert proc.stdout is not None and proc.stderr is not None
    state = _Progress(loop.time())
    tail: deque[str] = deque(maxlen=tail_lines)
    readers = [
        asyncio.create_task(_read_progress(proc.stdout, state, total_duration, on_progress)),
        asyncio.create_task(_read_tail(proc.stderr, tail)),
    ]
    waiter = asyncio.create_task(proc.wait())
    stalled = False
    try:
        poll = max(0.05, min(1.0, stall_timeout / 4))
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=poll)
            if done:
                break
            if loop.time() - state.last_advance > stall_timeout:
                stalled = True
                logger.warning("ffmpeg pid %s stalled for %.1fs; killing", proc.pid, stall_timeout)
                proc.kill()
                await waiter
                break
        await asyncio.wait(readers, timeout=5)
    finally:
        if proc.returncode is None:  # cancelled (job aborted, worker shutting down)
            proc.kill()
            await proc.wait()
        for task in readers:
            task.cancel()
        waiter.cancel()
    code = proc.returncode
    assert code is not None
    run = FFmpegRun(
        returncode=code, stderr_tail="\n".join(tail), elapsed_s=time.monotonic() - started
    )
    if stalled:
        raise StallError(
            f"ffmpeg made no progress for {stall_timeout:g}s",
            ffmpeg_tail=run.stderr_tail,
            returncode=code,
        )
    if code < 0:
        raise TransientRenderError(
            f"ffmpeg was killed by signal {-code}", ffmpeg_tail=run.stderr_tail, returncode=code
        )
    if code != 0:
        raise failure_class(run.stderr_tail)(
            f"ffmpeg exited with status {code}", ffmpeg_tail=run.stderr_tail, returncode=code
        )
    return run


def failure_class(stderr_tail: str) -> type[RenderError]:
    """What kind of failure a nonzero FFmpeg exit is, from its stderr (pure): a full disk, a
    passing shortage of memory or processes, or (anything else) the input's fault."""
    if any(m in stderr_tail for m in NO_SPACE_MARKERS):
        return NoSpaceError
    if any(m in stderr_tail for m in _TRANSIENT_MARKERS):
        return TransientRenderError
    return RenderError
