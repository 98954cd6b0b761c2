"""Reading a clip's reference pattern (agents/media/refs.py), and what skipping its
non-reference frames does to the frames a 60 -> 30 render shows: nothing, where it says yes.
Pure checks, then real clips encoded here with x265 and x264 and decoded by FFmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agents.media.refs import can_skip_half, frame_is_nonref, half_skippable, nal_units
from agents.render.ffmpeg import locate_ffmpeg

FFMPEG = locate_ffmpeg()


def test_nal_units_are_split_by_length_prefix_or_start_code() -> None:
    data = b"\x00\x00\x00\x02\x41\x9a" + b"\x00\x00\x00\x01\x01"
    assert list(nal_units(data, 4)) == [b"\x41\x9a", b"\x01"]
    assert list(nal_units(b"\x00\x00\x00\x09\x41", 4)) == []  # truncated: nothing made up
    annex_b = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x65\x88"
    assert list(nal_units(annex_b, None)) == [b"\x67\x42", b"\x65\x88"]


def test_frames_are_classified_from_their_first_slice() -> None:
    # H.264: SPS (7) is no slice; a slice (1) with nal_ref_idc 0 is non-reference
    assert frame_is_nonref("h264", [b"\x67", b"\x01\x9e"]) is True
    assert frame_is_nonref("h264", [b"\x41\x9a"]) is False  # ref_idc 2
    assert frame_is_nonref("h264", [b"\x65\x88"]) is False  # IDR
    # HEVC: TRAIL_N (0) non-reference, TRAIL_R (1) and IDR (19) reference; VPS (32) no slice
    assert frame_is_nonref("hevc", [bytes([32 << 1, 1]), bytes([0 << 1, 1])]) is True
    assert frame_is_nonref("hevc", [bytes([1 << 1, 1])]) is False
    assert frame_is_nonref("hevc", [bytes([19 << 1, 1])]) is False
    assert frame_is_nonref("hevc", [bytes([32 << 1, 1])]) is None
    assert frame_is_nonref("vp9", [b"\x01"]) is None


def gop(n: int = 60, last_ref: bool = True) -> list[tuple[bool, bool]]:
    """x265's closed GOP: r n r n ... r n r r (nonref, keyframe) in display order."""
    frames = [(i % 2 == 1, i == 0) for i in range(n)]
    if last_ref:
        frames[-1] = (False, False)
    return frames


def test_only_a_pattern_whose_shown_frames_are_all_references_may_skip() -> None:
    assert half_skippable(gop() * 3)
    assert half_skippable(gop(last_ref=False) * 3)
    shifted = gop() * 3
    shifted[70] = (True, False)  # an even frame, shown by the output, is non-reference
    assert not half_skippable(shifted)
    odd_key = gop() * 3
    odd_key[61] = (False, True)  # a keyframe at an odd position changes the phase
    assert not half_skippable(odd_key)
    all_ref = [(False, i % 60 == 0) for i in range(180)]
    assert not half_skippable(all_ref)  # nothing to gain
    assert not half_skippable(gop()[:40])  # too few frames to say


def encode(path: Path, *codec: str, rate: int = 60, seconds: float = 4) -> Path:
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size=320x180:rate={rate}", "-t", str(seconds), *codec, str(path)],
        check=True,
    )  # fmt: skip
    return path


X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
        "-x265-params", "keyint=60:min-keyint=60:open-gop=0:log-level=error"]  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("refs")
    return {
        "x265": encode(d / "x265.mp4", *X265),
        "x264_b1": encode(d / "x264_b1.mp4", "-c:v", "libx264", "-bf", "1", "-g", "60"),
        "x264_b0": encode(d / "x264_b0.mp4", "-c:v", "libx264", "-bf", "0", "-g", "60"),
    }


def test_clips_are_read_as_their_encoders_made_them(clips: dict[str, Path], tmp_path: Path) -> None:
    assert can_skip_half(clips["x265"])  # r n r n ... r n r r, GOPs of 60
    assert not can_skip_half(clips["x264_b1"])  # adaptive B-frames shift the pattern
    assert not can_skip_half(clips["x264_b0"])  # every frame a reference
    junk = tmp_path / "GX010001.MP4"
    junk.write_bytes(b"\x00" * 4096)
    assert not can_skip_half(junk)  # unreadable: no, and no error
    assert not can_skip_half(tmp_path / "missing.MP4")


def frame_hashes(path: Path, *input_options: str) -> list[str]:
    out = subprocess.run(
        [FFMPEG, "-v", "error", *input_options, "-i", str(path), "-vf", "fps=30",
         "-f", "framemd5", "-"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if line[:1] != "#"]


@pytest.mark.parametrize("seek", [[], ["-ss", "1.0", "-t", "2"], ["-ss", "1.3", "-t", "2.5"]])
def test_skipping_changes_no_frame_the_output_shows(
    clips: dict[str, Path], seek: list[str]
) -> None:
    full = frame_hashes(clips["x265"], *seek)
    skipped = frame_hashes(clips["x265"], "-skip_frame", "noref", *seek)
    assert len(full) >= 60 and skipped == full


def test_on_a_clip_that_may_not_skip_skipping_would_change_frames(clips: dict[str, Path]) -> None:
    """Why the check exists: x264's shifting B-frames lose frames the output shows."""
    full = frame_hashes(clips["x264_b1"])
    skipped = frame_hashes(clips["x264_b1"], "-skip_frame", "noref")
    assert skipped != full


def test_a_cut_that_starts_on_a_skipped_frame_starts_one_frame_later(
    clips: dict[str, Path],
) -> None:
    """0.95 s is frame 57, a skipped one: the output's first two frames are 1/60 s apart (at
    the cut, where nobody sees it), then it shows every other frame as before, none twice."""
    skipped = frame_hashes(clips["x265"], "-skip_frame", "noref", "-ss", "0.95", "-t", "2")
    assert len(skipped) >= 59 and len(set(skipped)) == len(skipped)
