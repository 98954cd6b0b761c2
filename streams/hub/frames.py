"""The dashboard's stills: one JPEG frame of a clip (PyAV to decode, OpenCV to scale and encode),
and a small LRU of them keyed by file, size, mtime and time.

The hub's own small grabber, not agents/media/frames.py: that module is the QR decoder's fast
grey-frame access (keyframes, luma planes); this one wants one colour frame at a time.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

import av
import cv2
import numpy as np

FRAME_MAX_WIDTH = 960
FRAME_CACHE = 64


class FrameError(Exception):
    """No frame could be taken from a file (permanent for these bytes)."""


def extract_frame(path: Path, at: float, max_width: int = FRAME_MAX_WIDTH) -> bytes:
    """A JPEG of the first frame at or after `at` seconds (the last one if the clip is shorter)."""
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise FrameError(f"cannot open: {exc}") from exc
    try:
        if not container.streams.video:
            raise FrameError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if at > 0 and stream.time_base is not None:
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is None or frame.time >= at:
                break
    except (av.FFmpegError, OSError) as exc:
        raise FrameError(f"cannot decode: {exc}") from exc
    finally:
        container.close()
    if chosen is None:
        raise FrameError("no video frames")
    image: np.ndarray = chosen.to_ndarray(format="bgr24")
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(
            image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise FrameError("JPEG encoding failed")
    return encoded.tobytes()


class FrameCache:
    """A small LRU of JPEG stills (clips do not change once imported)."""

    def __init__(self, size: int = FRAME_CACHE) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, int, int, float], bytes] = OrderedDict()
        self.misses = 0

    async def get(self, path: Path, at: float) -> bytes:
        st = await asyncio.to_thread(path.stat)
        key = (str(path), st.st_size, st.st_mtime_ns, round(at, 2))
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        jpeg = await asyncio.to_thread(extract_frame, path, at)
        self.entries[key] = jpeg
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return jpeg
