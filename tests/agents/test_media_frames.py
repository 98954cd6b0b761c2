from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from agents.media.frames import MediaOpenError, downscale, grey_frames, open_video

FPS = 10
GOP = 5


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s clip whose frame i is flat grey level 10 * i, keyframe every 5 frames."""
    path = tmp_path_factory.mktemp("frames") / "ramp.mp4"
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0", "bf": "0"}
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((180, 320), 10 * i, np.uint8), format="gray")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _level(grey: np.ndarray) -> int:
    # The encoder stores grey in limited-range luma (16..235).
    return round((float(grey.mean()) - 16) * 255 / 219 / 10)


def test_all_frames_come_out_grey_full_size_and_in_order(ramp: Path) -> None:
    with open_video(ramp) as handle:
        frames = list(grey_frames(handle))
    assert len(frames) == 20
    assert all(f.grey.shape == (180, 320) and f.grey.dtype == np.uint8 for f in frames)
    assert [_level(f.grey) for f in frames] == list(range(20))
    assert [round(f.time * FPS) for f in frames] == list(range(20))


def test_keyframes_only_skips_everything_else(ramp: Path) -> None:
    with open_video(ramp, threads=False) as handle:
        frames = list(grey_frames(handle, keyframes_only=True))
    assert [_level(f.grey) for f in frames] == [0, 5, 10, 15]
    assert all(f.key for f in frames)


def test_seek_starts_at_the_keyframe_before_the_time(ramp: Path) -> None:
    with open_video(ramp) as handle:
        first = next(iter(grey_frames(handle, keyframes_only=True)))
        after_seek = next(iter(grey_frames(handle, start=1.2)))
    assert _level(first.grey) == 0
    assert (_level(after_seek.grey), after_seek.key) == (10, True)


def test_every_converts_only_every_nth_frame_plus_keyframes(ramp: Path) -> None:
    with open_video(ramp) as handle:
        levels = [_level(f.grey) for f in grey_frames(handle, every=3)]
    assert levels == [0, 3, 5, 6, 9, 10, 12, 15, 18]


def test_downscale_keeps_aspect_and_leaves_small_images_alone() -> None:
    img = np.zeros((1080, 1920), np.uint8)
    assert downscale(img, 960).shape == (540, 960)
    small = np.zeros((100, 200), np.uint8)
    assert downscale(small, 960) is small


def test_open_video_refuses_non_video(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaOpenError) as info, open_video(path):
        pass
    assert info.value.retryable is False
