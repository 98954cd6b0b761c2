"""Opening a media file with PyAV, for the probe and the frame reader alike."""

from __future__ import annotations

from pathlib import Path

import av
import av.container
import av.video.stream

__all__ = ["MediaOpenError", "duration_s", "open_container"]


class MediaOpenError(Exception):
    """The file cannot be opened as a video (permanent: the bytes will not change)."""

    retryable = False

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def open_container(
    path: str | Path, error: type[MediaOpenError] = MediaOpenError
) -> av.container.InputContainer:
    """``path`` opened for reading; raise ``error`` if it cannot be."""
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise error(str(path), f"cannot open: {exc}") from exc


def duration_s(
    container: av.container.InputContainer, video: av.video.stream.VideoStream | None
) -> float | None:
    """Seconds of ``video`` if its stream says, else of the container; None if neither does."""
    if video is not None and video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
