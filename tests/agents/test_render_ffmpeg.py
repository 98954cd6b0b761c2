"""FFmpeg runner: locating the binary, progress parsing, stall abort, error tails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agents.render.errors import RenderError, StallError
from agents.render.ffmpeg import locate_ffmpeg, run_ffmpeg

pytestmark = pytest.mark.slow


def test_locate_ffmpeg_finds_a_working_binary() -> None:
    out = subprocess.run(
        [locate_ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    )
    assert "libx264" in out.stdout


async def test_progress_reaches_one_and_is_monotonic(tmp_path: Path) -> None:
    seen: list[float] = []

    async def progress(f: float) -> None:
        seen.append(f)

    args = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=2", "-c:v", "libx264"]
    args += ["-preset", "ultrafast", "-f", "mp4", str(tmp_path / "o.mp4")]
    run = await run_ffmpeg(args, total_duration=2.0, on_progress=progress, stall_timeout=30)
    assert run.returncode == 0 and seen[-1] == 1.0 and seen == sorted(seen)


async def test_a_run_without_progress_is_killed_as_stalled(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written.mp4"
    os.mkfifo(fifo)  # FFmpeg blocks opening it: no writer ever comes
    args = ["-i", f"file:{fifo}", "-f", "null", "-"]
    with pytest.raises(StallError) as info:
        await run_ffmpeg(args, total_duration=1.0, stall_timeout=0.5)
    assert info.value.retryable


async def test_failure_carries_ffmpegs_own_message(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(RenderError) as info:
        await run_ffmpeg(["-i", f"file:{bad}", "-f", "null", "-"], total_duration=1.0)
    assert not info.value.retryable and info.value.returncode not in (None, 0)
    assert "garbage.mp4" in info.value.ffmpeg_tail and "Invalid data" in info.value.ffmpeg_tail


async def test_progress_callback_errors_do_not_break_the_render(tmp_path: Path) -> None:
    async def broken(_: float) -> None:
        raise ConnectionError("redis went away")

    args = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=1", "-f", "null", "-"]
    run = await run_ffmpeg(args, total_duration=1.0, on_progress=broken)
    assert run.returncode == 0
