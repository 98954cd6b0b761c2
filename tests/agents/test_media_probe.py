from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from agents.media.probe import ProbeError, parse_creation_time, probe


def _write(path: Path, *, audio: bool, creation_time: str | None, seconds: float = 1.0) -> Path:
    fps = 25
    with av.open(str(path), mode="w", format="mp4") as out:
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.time_base = Fraction(1, fps)
        sound = out.add_stream("aac", rate=48000) if audio else None
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(
                np.full((240, 320), i * 8 % 256, np.uint8), format="gray"
            )
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            samples = int(48000 * seconds)
            for start in range(0, samples, 1024):
                n = min(1024, samples - start)
                chunk = av.AudioFrame.from_ndarray(
                    np.zeros((1, n), np.float32), format="fltp", layout="mono"
                )
                chunk.sample_rate = 48000
                chunk.pts = start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def test_probe_reads_video_facts_audio_and_creation_time(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "GX010001.MP4", audio=True, creation_time="2024-06-01T10:20:30.000000Z"
    )
    info = probe(path)
    assert (info.width, info.height, info.video_codec) == (320, 240, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    assert info.has_audio is True
    assert info.creation_time == datetime(2024, 6, 1, 10, 20, 30, tzinfo=UTC)
    assert {s.kind for s in info.streams} == {"video", "audio"}
    assert "mp4" in info.container_format


def test_probe_without_audio_or_creation_time(tmp_path: Path) -> None:
    info = probe(_write(tmp_path / "a.mp4", audio=False, creation_time=None))
    assert info.has_audio is False
    assert info.creation_time is None


def test_probe_refuses_a_file_that_is_not_media(tmp_path: Path) -> None:
    path = tmp_path / "x.MP4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ProbeError) as info:
        probe(path)
    assert info.value.retryable is False
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-01T10:20:30.000000Z", datetime(2024, 6, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-06-01T10:20:30", datetime(2024, 6, 1, 10, 20, 30, tzinfo=UTC)),
        (
            "2024-06-01T12:20:30+02:00",
            datetime(2024, 6, 1, 12, 20, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("1970-01-01T00:00:00.000000Z", None),  # camera clock never set
        ("1904-01-01T00:00:00Z", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_creation_time(text: str | None, expected: datetime | None) -> None:
    assert parse_creation_time(text) == expected
