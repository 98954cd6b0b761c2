"""Cheap frame access with PyAV for detectors that only need grey pixels.

Video decoding, not detection, dominates the cost of reading a QR from a clip, so this module
offers the cheap ways in: keyframes only (the decoder skips everything else), a sequential pass
with the in-loop deblocking filter skipped (about 20 % faster, harmless for detection), seeking
to a time, and grey frames taken straight from the luma plane (no colour conversion).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.video.frame
import av.video.stream
import cv2
import numpy as np

from agents.media.container import MediaOpenError, duration_s, open_container

logger = logging.getLogger(__name__)

__all__ = ["GreyFrame", "MediaOpenError", "downscale", "grey_frames", "luma", "open_video"]


@dataclass(frozen=True)
class GreyFrame:
    """A decoded frame as full-resolution luma; ``time`` in seconds from the stream start."""

    time: float
    key: bool
    grey: np.ndarray


@dataclass
class VideoHandle:
    """An open container and its first video stream (closed by :func:`open_video`)."""

    container: av.container.InputContainer
    stream: av.video.stream.VideoStream

    @property
    def duration(self) -> float | None:
        return duration_s(self.container, self.stream)


@contextmanager
def open_video(path: str | Path, *, threads: bool = True) -> Iterator[VideoHandle]:
    """Open ``path`` and yield its first video stream; raise :class:`MediaOpenError`."""
    container = open_container(path)
    try:
        if not container.streams.video:
            raise MediaOpenError(str(path), "no video stream")
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        yield VideoHandle(container, stream)
    finally:
        container.close()


def luma(frame: av.video.frame.VideoFrame) -> np.ndarray:
    """Grey pixels of ``frame``: the Y plane itself for planar YUV, converted otherwise."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "nv12"):
        plane = frame.planes[0]
        buf = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(
            frame.height, plane.line_size
        )
        # Copy: the decoder reuses the buffer once the frame object goes away.
        return buf[:, : frame.width].copy()
    return frame.to_ndarray(format="gray")


def downscale(grey: np.ndarray, max_width: int) -> np.ndarray:
    """``grey`` shrunk (area filter) so its width is at most ``max_width``."""
    h, w = grey.shape[:2]
    if w <= max_width:
        return grey
    scale = max_width / w
    return cv2.resize(grey, (max_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def grey_frames(
    handle: VideoHandle,
    *,
    keyframes_only: bool = False,
    start: float | None = None,
    skip_loop_filter: bool = True,
    every: int = 1,
) -> Iterator[GreyFrame]:
    """Decode ``handle``'s stream and yield grey frames.

    ``keyframes_only`` lets the decoder drop every non-key frame (the fast first look);
    ``start`` seeks to the keyframe at or before that time; ``every`` converts only every n-th
    decoded frame (decoding itself cannot skip frames that later frames reference).
    """
    stream = handle.stream
    ctx = stream.codec_context
    ctx.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
    if skip_loop_filter and not ctx.is_open:
        ctx.options = {"skip_loop_filter": "all", "flags2": "+fast"}
    if start is not None and stream.time_base is not None:
        handle.container.seek(int(start / stream.time_base), stream=stream, backward=True)
        ctx.flush_buffers()
    base = (
        float(stream.start_time * stream.time_base)
        if stream.start_time and stream.time_base
        else 0.0
    )
    n = 0
    for frame in handle.container.decode(stream):
        n += 1
        if every > 1 and not frame.key_frame and (n - 1) % every:
            continue
        t = float(frame.time) - base if frame.time is not None else 0.0
        yield GreyFrame(time=t, key=bool(frame.key_frame), grey=luma(frame))
