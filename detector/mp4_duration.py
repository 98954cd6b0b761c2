"""A clip's duration from its MP4/QuickTime ``moov`` box, reading only box headers.

The hub judges a clip a QR candidate by its length (a ticket clip is a few seconds), and the
detector must say so before anything is copied or decoded, so this reads as little of the card
as it can: the top-level box headers one after the other (``seek`` over ``mdat``, however
large), then the headers of ``moov``'s children, the 32 bytes of ``mvhd`` that hold the
timescale and duration, and each ``trak``'s first box (``tkhd``, its duration). A 4 GB GoPro
chapter with ``moov`` at its end costs a few dozen reads of 1-36 bytes (well under 1 KB), never
a scan of the data. The duration is the longest of ``mvhd``'s and the tracks' (what ffprobe
reports as the container's duration: a GoPro's telemetry track outlasts the video that ``mvhd``
measures by up to a second).

Handled: 32- and 64-bit box sizes (``size == 1`` + a 64-bit size), a last box running to the end
of the file (``size == 0``), ``moov`` before or after ``mdat``, ``mvhd``/``tkhd`` version 0
and 1. Anything else is *unknown* (``None``), never an exception and never a guess: not an MP4
(the first box is not a box), a truncated file (a box runs past the end: a card pulled
mid-recording leaves ``mdat`` unclosed and no ``moov``), no ``moov``/``mvhd``, a zero timescale,
a duration that is zero, "unknown" (all ones) or over :data:`MAX_DURATION_S`, an I/O error. The
hub then falls back to judging the file by its size.

Pure (stdlib only, no decoder): the detector installs without the backend.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Final, Protocol

logger = logging.getLogger(__name__)

__all__ = ["MAX_DURATION_S", "MP4_EXTENSIONS", "Readable", "duration_of", "read_duration"]

#: Longest duration believed (the protocol's bound too): anything longer is a corrupt header.
MAX_DURATION_S: Final = 24 * 3600.0
#: Extensions of ISO-BMFF/QuickTime containers (Insta360 ``.insv`` and GoPro Max ``.360`` too).
MP4_EXTENSIONS: Final = frozenset({".mp4", ".mov", ".m4v", ".insv", ".360"})
#: Top-level boxes (and ``moov`` children) walked before giving up: a real file has < 10.
MAX_BOXES: Final = 64


class Readable(Protocol):
    """What is read from: a binary file (``seek`` and ``read``)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def read(self, size: int = -1, /) -> bytes | None: ...


_HEADER = struct.Struct(">I4s")
_LARGE = struct.Struct(">Q")
_MVHD_V0 = struct.Struct(">B3xIIII")  # version, flags, creation, modification, timescale, duration
_MVHD_V1 = struct.Struct(">B3xQQIQ")
# version, flags, creation, modification, track id, reserved, duration (movie timescale)
_TKHD_V0 = struct.Struct(">B3xIIIII")
_TKHD_V1 = struct.Struct(">B3xQQIIQ")
_UNKNOWN_32 = 0xFFFFFFFF
_UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF


def _is_box_type(kind: bytes) -> bool:
    # Box types are four printable characters (ISO/IEC 14496-12; Apple's "©xyz" are in udta,
    # never at the levels walked here).
    return len(kind) == 4 and all(0x20 <= b <= 0x7E for b in kind)


def _read_exact(f: Readable, n: int) -> bytes | None:
    data = f.read(n)
    return data if data is not None and len(data) == n else None


def _box_header(f: Readable, offset: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, header length, box size) of the box at ``offset`` that must end by ``end``;
    None when it is not a well-formed box inside that range."""
    if end - offset < _HEADER.size:
        return None
    f.seek(offset)
    raw = _read_exact(f, _HEADER.size)
    if raw is None:
        return None
    size, kind = _HEADER.unpack(raw)
    header = _HEADER.size
    if not _is_box_type(kind):
        return None
    if size == 1:
        large = _read_exact(f, _LARGE.size)
        if large is None:
            return None
        size = _LARGE.unpack(large)[0]
        header += _LARGE.size
    elif size == 0:  # the last box: runs to the end of its container
        size = end - offset
    if size < header or offset + size > end:
        return None  # a box that overruns its container: a truncated (or corrupt) file
    return kind, header, size


def _full_box(
    f: Readable, offset: int, size: int, v0: struct.Struct, v1: struct.Struct
) -> tuple[int, ...] | None:
    """The fields of a version 0 or 1 full box's body at ``offset`` (``size`` bytes)."""
    f.seek(offset)
    head = _read_exact(f, 1)
    if head is None:
        return None
    layout = v1 if head[0] == 1 else v0 if head[0] == 0 else None
    if layout is None or size < layout.size:
        return None
    f.seek(offset)
    raw = _read_exact(f, layout.size)
    return None if raw is None else layout.unpack(raw)


def _known(duration: int) -> bool:
    return duration not in (0, _UNKNOWN_32, _UNKNOWN_64)


def _track_duration(f: Readable, start: int, end: int) -> int | None:
    """A ``trak``'s ``tkhd`` duration (in the movie's timescale), None when absent/unknown."""
    box = _box_header(f, start, end)
    if box is None or box[0] != b"tkhd":  # tkhd is the first box of a trak
        return None
    _kind, header, size = box
    fields = _full_box(f, start + header, size - header, _TKHD_V0, _TKHD_V1)
    if fields is None or not _known(fields[-1]):
        return None
    return fields[-1]


def _movie_duration(f: Readable, start: int, end: int) -> float | None:
    """The longest of ``mvhd``'s duration and the tracks' ``tkhd`` durations, in seconds (what
    ffprobe reports: a GoPro's telemetry track outlasts the video that ``mvhd`` measures)."""
    timescale = 0
    longest = 0
    offset = start
    for _ in range(MAX_BOXES):
        if offset >= end:
            break
        box = _box_header(f, offset, end)
        if box is None:
            return None
        kind, header, size = box
        if kind == b"mvhd":
            fields = _full_box(f, offset + header, size - header, _MVHD_V0, _MVHD_V1)
            if fields is None:
                return None
            timescale = fields[-2]
            if _known(fields[-1]):
                longest = max(longest, fields[-1])
        elif kind == b"trak":
            longest = max(longest, _track_duration(f, offset + header, offset + size) or 0)
        offset += size
    if timescale == 0 or longest == 0:
        return None
    seconds = longest / timescale
    return seconds if seconds <= MAX_DURATION_S else None


def duration_of(f: Readable, file_size: int) -> float | None:
    """The duration in seconds of the MP4/QuickTime file open as ``f`` (binary, seekable) of
    ``file_size`` bytes; None when unknown (see the module doc). Reads only box headers."""
    offset = 0
    for _ in range(MAX_BOXES):
        box = _box_header(f, offset, file_size)
        if box is None:
            return None
        kind, header, size = box
        if kind == b"moov":
            return _movie_duration(f, offset + header, offset + size)
        offset += size
        if offset >= file_size:
            return None
    return None


def read_duration(path: str | Path) -> float | None:
    """The duration of the clip at ``path`` (None when unknown, not an MP4/MOV by extension,
    or unreadable: a flaky card is logged, never raised)."""
    if os.path.splitext(str(path))[1].lower() not in MP4_EXTENSIONS:
        return None
    try:
        # Unbuffered: each header read is the few bytes asked for, not a block of 8 KB.
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            return duration_of(f, size)
    except OSError as exc:
        logger.warning("duration of %s unknown: %s", path, exc)
        return None
