"""Frames of a jump's footage for its photos, read with PyAV (the I/O edge of agents/photos).

The session's clips are one recording timeline, end to end in session order by their probed
durations (as the `phases` step counts). `sample` decodes the part of each clip inside a window
of that timeline and measures a few frames a second on a small copy (agents/photos/select.py,
faces by agents/photos/faces.py); `grab` decodes one frame at full resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.video.frame
import cv2
import numpy as np

from agents.media.container import MediaOpenError, open_container
from agents.photos.faces import FaceDetector
from agents.photos.select import Features, features

logger = logging.getLogger(__name__)

SMALL_WIDTH = 480  # the measured copy
MAX_SAMPLES = 900  # a long window is sampled more sparsely


class FrameReadError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TimelineClip:
    """A clip of the recording: where it starts on the timeline, and for how long."""

    file_id: int
    name: str
    path: Path
    offset_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.offset_s + self.duration_s


def timeline(clips: Sequence[tuple[int, str, Path, float]]) -> list[TimelineClip]:
    """(file id, name, path, duration) in session order -> clips placed end to end."""
    out: list[TimelineClip] = []
    at = 0.0
    for file_id, name, path, duration in clips:
        out.append(TimelineClip(file_id, name, path, at, duration))
        at += duration
    return out


def locate(clips: Sequence[TimelineClip], t: float) -> tuple[TimelineClip, float]:
    """The clip showing timeline time `t`, and the time within it."""
    for c in clips:
        if t < c.end_s:
            return c, max(0.0, t - c.offset_s)
    last = clips[-1]
    return last, max(0.0, min(t - last.offset_s, last.duration_s))


def _open(clip: TimelineClip) -> av.container.InputContainer:
    try:
        container = open_container(clip.path)
    except MediaOpenError as exc:
        raise FrameReadError(f"{clip.name}: {exc.reason}") from exc
    if not container.streams.video:
        container.close()
        raise FrameReadError(f"{clip.name}: no video stream")
    return container


def _decode_from(
    container: av.container.InputContainer, start: float
) -> tuple[av.video.stream.VideoStream, float]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    base = (
        float(stream.start_time * stream.time_base)
        if stream.start_time and stream.time_base
        else 0.0
    )
    if start > 0 and stream.time_base is not None:
        container.seek(int((start + base) / stream.time_base), stream=stream, backward=True)
    return stream, base


def _small(frame: av.video.frame.VideoFrame) -> np.ndarray:
    w = min(SMALL_WIDTH, frame.width)
    h = max(2, round(frame.height * w / frame.width))
    return frame.to_ndarray(width=w, height=h, format="bgr24")


def sample(
    clips: Sequence[TimelineClip],
    start: float,
    end: float,
    *,
    fps: float,
    faces: FaceDetector,
    notes: list[str],
) -> list[Features]:
    """Frames every 1/`fps` s (fewer over a long window) between timeline times `start`..`end`,
    measured; a clip that cannot be decoded is skipped with a note."""
    span = max(0.0, end - start)
    step = max(1.0 / fps, span / MAX_SAMPLES)
    out: list[Features] = []
    for clip in clips:
        lo, hi = max(start, clip.offset_s), min(end, clip.end_s)
        if hi <= lo:
            continue
        try:
            out.extend(_sample_clip(clip, lo, hi, step, faces))
        except (FrameReadError, av.FFmpegError) as exc:
            reason = exc.reason if isinstance(exc, FrameReadError) else str(exc)
            notes.append(f"{clip.name}: frames not readable for photos ({reason})")
            logger.warning("photos: %s not readable: %s", clip.name, reason)
    return out


def _sample_clip(
    clip: TimelineClip, lo: float, hi: float, step: float, faces: FaceDetector
) -> list[Features]:
    out: list[Features] = []
    # samples every `step` seconds of the clip's own time, from the window's start in it
    k = int(np.ceil((lo - clip.offset_s) / step - 1e-9)) if step > 0 else 0
    with _open(clip) as container:
        stream, base = _decode_from(container, lo - clip.offset_s)
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            local = float(frame.time) - base
            t = clip.offset_s + local
            if t > hi:
                break
            if local + 1e-6 < k * step:
                continue
            small = _small(frame)
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            out.append(features(t, small, faces.count(grey)))
            while k * step <= local + 1e-6:
                k += 1
    return out


def grab(clip: TimelineClip, local_t: float) -> np.ndarray:
    """The frame of `clip` at `local_t` seconds (the first at or after it), full resolution BGR."""
    with _open(clip) as container:
        stream, base = _decode_from(container, local_t)
        rate = float(stream.average_rate or 30)
        last: av.video.frame.VideoFrame | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            last = frame
            if float(frame.time) - base >= local_t - 0.5 / rate:
                break
        if last is None:
            raise FrameReadError(f"{clip.name}: no frame at {local_t:.2f} s")
        return last.to_ndarray(format="bgr24")
