"""Frames of a jump's footage for its photos, read with PyAV (the I/O edge of agents/photos).

The session's clips are one recording timeline, end to end in session order by their probed
durations (as the `phases` step counts). `sample` decodes the part of each clip inside a window
of that timeline and measures a few frames a second on a small copy (agents/photos/select.py,
faces by agents/photos/faces.py) — only the keyframes when they come often enough; `frames_at`
decodes the picked frames at full resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
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
SEEK_GAP_S = 1.0  # the next frame wanted further than this: seek rather than decode on


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
    if not stream.codec_context.is_open:
        stream.thread_type = "AUTO"
    base = (
        float(stream.start_time * stream.time_base)
        if stream.start_time and stream.time_base
        else 0.0
    )
    if start > 0 and stream.time_base is not None:
        container.seek(int((start + base) / stream.time_base), stream=stream, backward=True)
        if stream.codec_context.is_open:
            stream.codec_context.flush_buffers()
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
    spacing = key_spacing(clip, lo - clip.offset_s)
    with _open(clip) as container:
        stream, base = _decode_from(container, lo - clip.offset_s)
        if spacing is not None and spacing <= step * 1.05:
            # keyframes come as often as the samples are wanted: decode only those (GoPro
            # footage, a keyframe every half second or second: several times faster)
            stream.codec_context.skip_frame = "NONKEY"
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


def frames_at(clips: Sequence[TimelineClip], times: Sequence[float]) -> Iterator[np.ndarray]:
    """The frames at timeline `times` (ascending), each at full resolution (BGR), one at a time
    (a 4K frame is 25 MB): each clip is opened once and decoded forward, seeking only across a
    gap."""
    k = 0
    while k < len(times):
        clip, _ = locate(clips, times[k])
        run = [times[k]]
        while k + len(run) < len(times) and locate(clips, times[k + len(run)])[0] is clip:
            run.append(times[k + len(run)])
        k += len(run)
        yield from _frames_of(clip, [locate(clips, t)[1] for t in run])


def _frames_of(clip: TimelineClip, local_times: Sequence[float]) -> Iterator[np.ndarray]:
    with _open(clip) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 30)
        decoded: Iterator[av.video.frame.VideoFrame] | None = None
        at = -1.0  # the time of the last frame decoded
        base = 0.0
        for target in local_times:
            if decoded is None or target < at or target > at + SEEK_GAP_S:
                stream, base = _decode_from(container, target)
                decoded = iter(container.decode(stream))
            last: av.video.frame.VideoFrame | None = None
            for frame in decoded:
                if frame.time is None:
                    continue
                last, at = frame, float(frame.time) - base
                if at >= target - 0.5 / rate:
                    break
            if last is None:
                raise FrameReadError(f"{clip.name}: no frame at {target:.2f} s")
            yield last.to_ndarray(format="bgr24")


def key_spacing(clip: TimelineClip, start: float) -> float | None:
    """The median seconds between keyframes from `start` on (packets only, nothing decoded);
    None when too few are found to say."""
    with _open(clip) as container:
        stream, base = _decode_from(container, start)
        keys: list[float] = []
        for n, packet in enumerate(container.demux(stream)):
            if n >= 400 or len(keys) >= 12:
                break
            if packet.is_keyframe and packet.pts is not None and stream.time_base is not None:
                keys.append(float(packet.pts * stream.time_base) - base)
    if len(keys) < 3:
        return None
    return float(np.median(np.diff(sorted(keys))))
