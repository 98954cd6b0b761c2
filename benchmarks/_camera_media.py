"""Camera-shaped footage for the 4K render benchmark: a GoPro-like recording in two chapters.

GoPro cameras record 4K HEVC (``hvc1``) at 30-60 fps, 60-100 Mbit/s, AAC 48 kHz stereo, and split
a recording into ~4 GB chapters named ``GX01nnnn.MP4``, ``GX02nnnn.MP4``, ... This makes a
recording of that shape with the renderer's own FFmpeg (nothing downloaded): moving content (a
test pattern panned like a hand-held camera) under temporal grain, encoded at a GoPro bitrate, so
decoding it costs what decoding camera footage costs.

Encoding unique 4K60 HEVC at such a bitrate runs at a few frames per second on two cores, so only
a short span (``unique_s``, 10 s by default) is encoded, once; each chapter is that span repeated
by stream-copy concatenation (closed GOPs, one keyframe a second, so the joins are clean), muxed
with its own audio (wind-like pink noise under an engine tone). The decode cost per second is the
same as unique footage; what repeats is only the picture. Everything is cached under names
keyed by the parameters: a changed shape regenerates, an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agents.render.ffmpeg import locate_ffmpeg

GEN_VERSION = 1  # bump when the generated content changes


@dataclass(frozen=True)
class CameraShape:
    """What the recording looks like (every field is in the cache key)."""

    width: int = 3840
    height: int = 2160
    fps: int = 60
    bitrate_mbit: int = 60  # GoPro HEVC 4K60: ~60 (standard) to 100 (high) Mbit/s
    chapters_s: tuple[float, ...] = (120.0, 60.0)  # seconds of each chapter, in order
    unique_s: float = 10.0  # the span actually encoded; chapters repeat it
    grain: int = 12  # temporal noise strength (FFmpeg `noise` alls)
    file_number: int = 42  # GX01<nnnn>.MP4

    @property
    def total_s(self) -> float:
        return sum(self.chapters_s)

    def key(self, *, picture_only: bool = False) -> str:
        """A hash of the shape (`picture_only`: of what the encoded span depends on)."""
        data: dict[str, object] = {**asdict(self), "version": GEN_VERSION}
        if picture_only:
            for name in ("chapters_s", "file_number"):
                del data[name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def chapter_names(self) -> list[str]:
        return [f"GX{n + 1:02d}{self.file_number:04d}.MP4" for n in range(len(self.chapters_s))]


def _run_with_progress(args: Sequence[str], what: str, total_s: float) -> None:
    """Run FFmpeg, printing how far it got every few seconds (generation is long work)."""
    cmd = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    cmd += ["-progress", "pipe:1", "-nostats", *args]
    started = last = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            now = time.monotonic()
            if key == "out_time_us" and value.isdigit() and now - last >= 10:
                last = now
                done = int(value) / 1e6
                rate = done / (now - started)
                eta = (total_s - done) / rate if rate > 0 else float("nan")
                print(
                    f"  {what}: {done:.1f}/{total_s:g} s of video after {now - started:.0f} s "
                    f"(about {eta:.0f} s left)",
                    flush=True,
                )
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed making {what} (exit {proc.returncode})")


def _unique_span(shape: CameraShape, path: Path) -> None:
    w, h, fps = shape.width, shape.height, shape.fps
    pad_w, pad_h = w + w // 10, h + h // 10  # room to pan like a hand-held camera
    video = (
        f"testsrc2=size={pad_w}x{pad_h}:rate={fps},"
        f"crop={w}:{h}:x='{w // 20}+{w // 21}*sin(t*0.9)':y='{h // 20}+{h // 21}*sin(t*1.3)',"
        f"noise=alls={shape.grain}:allf=t,format=yuv420p"
    )
    rate = shape.bitrate_mbit
    x265 = f"keyint={fps}:min-keyint={fps}:open-gop=0:log-level=error"
    args = ["-f", "lavfi", "-i", video, "-t", f"{shape.unique_s:g}", "-an"]
    args += ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-pix_fmt", "yuv420p"]
    args += ["-b:v", f"{rate}M", "-maxrate", f"{round(rate * 1.25)}M", "-bufsize", f"{rate}M"]
    args += ["-x265-params", x265, str(path)]
    _run_with_progress(args, f"unique {w}x{h}p{fps} HEVC span", shape.unique_s)


def _chapter(shape: CameraShape, unique: Path, seconds: float, n: int, path: Path) -> None:
    repeats = int(seconds // shape.unique_s) + 1
    listing = path.with_suffix(".txt")
    line = f"file '{unique.absolute()}'\n"
    listing.write_text(line * repeats, encoding="utf-8")
    tone = 90 + 7 * n  # engine drone, a little different per chapter
    audio = (
        f"anoisesrc=color=pink:amplitude=0.25:sample_rate=48000:seed={n + 1}[wind];"
        f"sine=frequency={tone}:sample_rate=48000[engine];"
        "[wind][engine]amix=inputs=2:weights=1 0.4,pan=stereo|c0=c0|c1=c0[a]"
    )
    args = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    args += ["-filter_complex", audio, "-map", "0:v:0", "-map", "[a]"]
    args += ["-c:v", "copy", "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "192k", "-ar", "48000"]
    args += ["-ac", "2", "-t", f"{seconds:g}", "-f", "mp4", str(path)]
    _run_with_progress(args, f"chapter {path.name}", seconds)
    listing.unlink()


def camera_recording(root: Path, shape: CameraShape) -> list[Path]:
    """The chapters of the recording (generated once into ``root/<key>/``, then reused)."""
    folder = root / f"{shape.width}x{shape.height}p{shape.fps}-{shape.key()}"
    chapters = [folder / name for name in shape.chapter_names()]
    if all(p.is_file() for p in chapters):
        return chapters
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"generating a {shape.total_s:g} s {shape.width}x{shape.height} {shape.fps} fps HEVC "
        f"recording at {shape.bitrate_mbit} Mbit/s in {len(chapters)} chapters (once; cached in "
        f"{folder}) ...",
        flush=True,
    )
    unique = root / f"unique-{shape.key(picture_only=True)}.mp4"  # shared by chapter layouts
    if not unique.is_file():
        partial = root / f"partial-{unique.name}"
        _unique_span(shape, partial)
        partial.replace(unique)
    for n, (seconds, path) in enumerate(zip(shape.chapters_s, chapters, strict=True)):
        if not path.is_file():
            partial = path.with_name(f"partial-{path.name}")
            _chapter(shape, unique, seconds, n, partial)
            partial.replace(path)
    return chapters
