"""Media facts of a footage file read with PyAV (no ffprobe binary needed).

:func:`probe` returns a :class:`MediaInfo`: duration, resolution, codec, frame rate, whether there
is audio, and the container's ``creation_time`` (the camera's clock at recording start), which
session grouping prefers over the file's FAT mtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agents.media.container import MediaOpenError, duration_s, open_container

logger = logging.getLogger(__name__)

__all__ = ["MediaInfo", "ProbeError", "StreamInfo", "parse_creation_time", "probe"]


class ProbeError(MediaOpenError):
    """The file is not readable media (permanent for these bytes)."""


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "video" | "audio" | "data" | ...
    codec: str | None


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    width: int | None
    height: int | None
    video_codec: str | None
    fps: float | None
    has_audio: bool
    creation_time: datetime | None
    container_format: str
    streams: tuple[StreamInfo, ...]


def parse_creation_time(value: str | None) -> datetime | None:
    """Parse a container ``creation_time`` tag (ISO 8601, usually UTC); None when absent/bogus."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Cameras with a flat RTC battery write 1904/1970 epochs; that is no capture time.
    if parsed.year < 2000:
        return None
    return parsed


def probe(path: str | Path) -> MediaInfo:
    """Read the media facts of ``path``; raise :class:`ProbeError` if it is not media."""
    with open_container(path, ProbeError) as container:
        streams = tuple(
            StreamInfo(
                index=s.index, kind=s.type, codec=s.codec_context.name if s.codec_context else None
            )
            for s in container.streams
        )
        video = container.streams.video[0] if container.streams.video else None
        fps: float | None = None
        if video is not None:
            rate = video.average_rate or video.base_rate
            fps = float(rate) if rate else None
        creation = container.metadata.get("creation_time")
        if creation is None and video is not None:
            creation = video.metadata.get("creation_time")
        return MediaInfo(
            duration_s=duration_s(container, video),
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            video_codec=video.codec_context.name if video is not None else None,
            fps=fps,
            has_audio=bool(container.streams.audio),
            creation_time=parse_creation_time(creation),
            container_format=container.format.name,
            streams=streams,
        )
