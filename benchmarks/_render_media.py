"""Synthetic media for render tests and the render benchmark (moving test pattern + tone, a logo).

Generated with the same FFmpeg the renderer uses, so nothing is downloaded.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agents.render.ffmpeg import locate_ffmpeg


def make_clip(
    path: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: float = 30,
    audio: bool = True,
    preset: str = "ultrafast",
    faststart: bool = True,
    tone_hz: int = 440,
    pattern: str = "testsrc2",
) -> Path:
    """An H.264 (+AAC) MP4 with moving content."""
    args = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    args += ["-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={tone_hz}:sample_rate=44100:duration={seconds}",
        ]
    args += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", "-g", str(int(fps * 2))]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    if faststart:
        args += ["-movflags", "+faststart"]
    args += ["-t", str(seconds), str(path)]
    subprocess.run(args, check=True)
    return path


def make_logo(path: Path, *, width: int = 400, height: int = 200) -> Path:
    """A PNG logo with an alpha channel: opaque magenta box on transparent ground."""
    filt = (
        f"color=c=magenta@1.0:size={width}x{height},format=rgba,"
        f"drawbox=x={width // 4}:y={height // 4}:w={width // 2}:h={height // 2}:color=yellow:t=fill"
    )
    args = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    args += ["-f", "lavfi", "-i", filt, "-frames:v", "1", str(path)]
    subprocess.run(args, check=True)
    return path
