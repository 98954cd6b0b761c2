"""Which frames of a clip nothing refers to: may its decoder skip every other frame?

A GoPro records 60 fps and the product is 30 fps, so half of the decoded frames are thrown away
by the render's `fps` filter. When those are exactly the frames no other frame is predicted
from (non-reference frames), the decoder can skip them (FFmpeg's `-skip_frame noref`): the
frames it still decodes are the same, and decoding 4K HEVC is most of a render's CPU
(docs/architecture.md, "Rendering camera footage": 1.66x less here). Which frames are
non-reference is the camera encoder's choice, so this reads the clip's first packets and says
yes only when, in display order, every frame the 2:1 drop keeps (the even ones: keyframes are
even, and the drop keeps them) is a reference frame, and most of the others (`MIN_SKIPPED`) are
not: x265's closed GOPs of 60, say, are `r n r n … r n r r`, the last frame a reference one
that is decoded and dropped as before. x264's adaptive B-frames shift the pattern by one
here and there, which would skip a frame the output shows: no.

The pure part classifies NAL units (H.264: `nal_ref_idc == 0`; HEVC: the sub-layer
non-reference types, FFmpeg's `ff_hevc_nal_is_nonref`) and checks the pattern; the edge,
`can_skip_half`, demuxes packets without decoding them. It never raises: anything it cannot read
is "no", and the render decodes every frame as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import av

logger = logging.getLogger(__name__)

#: Packets read from the start of a clip (4 s of 60 fps; ~50 MB of 4K HEVC at 100 Mbit/s).
PROBE_PACKETS = 240
#: Fewer frames than this prove nothing.
MIN_FRAMES = 60
#: The share of the odd frames that must be skippable for skipping to be worth it.
MIN_SKIPPED = 0.75

_H264_VCL = frozenset({1, 5})
_HEVC_NONREF = frozenset({0, 2, 4, 6, 8, 10, 12, 14})  # TRAIL_N ... RSV_VCL_N14


def nal_units(data: bytes, length_size: int | None) -> Iterator[bytes]:
    """The NAL units of one packet: length-prefixed (MP4's avcC/hvcC, `length_size` bytes) or,
    with `length_size` None, Annex B start codes. A truncated unit ends the iteration."""
    if length_size is None:
        for part in data.split(b"\x00\x00\x01"):
            part = part.rstrip(b"\x00")
            if part:
                yield part
        return
    i = 0
    while i + length_size <= len(data):
        n = int.from_bytes(data[i : i + length_size], "big")
        i += length_size
        if n == 0 or i + n > len(data):
            return
        yield data[i : i + n]
        i += n


def frame_is_nonref(codec: str, units: Sequence[bytes]) -> bool | None:
    """Whether the frame these NAL units carry is a non-reference frame, from its first slice;
    None if the packet holds no slice of a codec this knows."""
    for nal in units:
        if not nal:
            continue
        if codec == "h264":
            if nal[0] & 0x1F in _H264_VCL:
                return (nal[0] >> 5) & 0x3 == 0
        elif codec == "hevc":
            kind = (nal[0] >> 1) & 0x3F
            if kind < 32:  # a VCL unit (a slice)
                return kind in _HEVC_NONREF
        else:
            return None
    return None


def half_skippable(frames: Sequence[tuple[bool, bool]], min_frames: int = MIN_FRAMES) -> bool:
    """`frames` in display order as (non-reference, keyframe): every even frame (and every
    keyframe) is a reference frame at an even position, and at least `MIN_SKIPPED` of the odd
    frames are non-reference; at least `min_frames` frames."""
    if len(frames) < min_frames:
        return False
    odd = skipped = 0
    for i, (nonref, key) in enumerate(frames):
        if i % 2 == 0:
            if nonref:
                return False  # the output shows this frame: it must be decoded
        elif key:
            return False  # the pattern's phase would change at this keyframe
        else:
            odd += 1
            skipped += nonref
    return skipped >= MIN_SKIPPED * odd


def length_size(codec: str, extradata: bytes | None) -> int | None:
    """The NAL length field's size from the avcC / hvcC record; None for Annex B (or none)."""
    if not extradata or extradata[:3] == b"\x00\x00\x01" or extradata[:4] == b"\x00\x00\x00\x01":
        return None
    if codec == "h264" and len(extradata) > 4:
        return (extradata[4] & 0x3) + 1
    if codec == "hevc" and len(extradata) > 21:
        return (extradata[21] & 0x3) + 1
    return None


def can_skip_half(path: Path, packets: int = PROBE_PACKETS) -> bool:
    """True if `path`'s video may be decoded at half its frame rate with `-skip_frame noref`
    and give the same frames the 2:1 `fps` drop keeps (see the module docstring)."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in ("h264", "hevc"):
                return False
            size = length_size(codec, stream.codec_context.extradata)
            frames: list[tuple[int, bool, bool]] = []
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                nonref = frame_is_nonref(codec, list(nal_units(bytes(packet), size)))
                if nonref is None:
                    return False
                frames.append((packet.pts, nonref, packet.is_keyframe))
                if len(frames) >= packets:
                    break
    except (av.FFmpegError, OSError, ValueError) as exc:
        logger.info("%s: reference pattern not read (%s); every frame is decoded", path.name, exc)
        return False
    frames.sort()
    # the packets read end at a point in decode order: the last few in display order may wait
    # for frames not read yet, so a GOP's worth of reordering is left off the end
    shown = [(nonref, key) for _, nonref, key in frames[: max(0, len(frames) - 8)]]
    return half_skippable(shown)
