"""The GPMF reader on the two real GoPro files, on files without telemetry and on damaged ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from telemetry_media import video_with_gpmd

from agents.telemetry.audio_decode import clip_sound
from agents.telemetry.gpmf_reader import TelemetryReadError, read_clip
from agents.telemetry.phases import detect
from agents.telemetry.series import (
    STANDARD_GRAVITY,
    ClipTelemetry,
    GpsFix,
    GpsSeries,
    TelemetryStatus,
    Vector3Series,
    drop_unlocked,
    group_chapters,
    join_chapters,
    parse_gpsu,
)


def test_hero5_karma_has_imu_and_no_camera_gps(gopro_media: Path) -> None:
    tel = read_clip(gopro_media / "karma.mp4")
    assert tel.status is TelemetryStatus.OK
    assert tel.camera == "Camera"
    assert tel.duration_s == pytest.approx(13.013, abs=0.001)
    assert tel.accl is not None and tel.gyro is not None
    assert (tel.accl.count, tel.gyro.count) == (2397, 4795)
    assert tel.accl.rate_hz == pytest.approx(185.1, abs=0.5)
    assert tel.gyro.rate_hz == pytest.approx(369.4, abs=0.5)
    # the Karma's GPS is in the drone's own streams (GLPI/GPRI), not GPS5: a camera without GPS
    assert tel.gps is None and not tel.has_gps and tel.cori is None
    assert np.mean(tel.accl.magnitude) / STANDARD_GRAVITY == pytest.approx(1.0, abs=0.03)


def test_max_has_gps5_with_fix_time_and_cori(gopro_media: Path) -> None:
    tel = read_clip(gopro_media / "max-heromode.mp4")
    assert tel.camera == "GoPro Max"
    assert tel.duration_s == pytest.approx(10.543, abs=0.001)
    assert tel.accl is not None and tel.gyro is not None and tel.cori is not None
    assert (tel.accl.count, tel.gyro.count, tel.cori.count) == (2082, 2082, 316)
    assert tel.accl.rate_hz == pytest.approx(197.5, abs=0.5)
    assert tel.gps is not None
    assert tel.gps.count == 191
    assert tel.gps.rate_hz == pytest.approx(18.1, abs=0.2)
    assert set(tel.gps.fix.tolist()) == {GpsFix.THREE_D}
    assert (tel.dropped_unlocked, tel.bad_gps_times) == (0, 0)
    first = (
        tel.gps.lat[0],
        tel.gps.lon[0],
        tel.gps.alt[0],
        tel.gps.speed_2d[0],
        tel.gps.speed_3d[0],
    )
    assert first == pytest.approx((33.12677, -117.3273436, -22.959, 1.046, 1.0))
    assert tel.gps_start_utc == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC)
    assert tel.gps_start_t == 0.0
    assert np.mean(tel.accl.magnitude) / STANDARD_GRAVITY == pytest.approx(1.0, abs=0.03)
    assert np.allclose(np.linalg.norm(tel.cori.wxyz, axis=1), 1.0, atol=0.01)


def test_a_file_without_gpmd_is_no_telemetry(tmp_path: Path) -> None:
    tel = read_clip(video_with_gpmd(tmp_path / "DJI_0001.MP4"))
    assert tel.status is TelemetryStatus.NO_TELEMETRY
    assert tel.accl is None and tel.duration_s == pytest.approx(2.0, abs=0.1)


def test_a_gpmd_track_of_junk_is_a_clear_error(tmp_path: Path) -> None:
    path = video_with_gpmd(tmp_path / "GX010001.MP4", [b"this is not GPMF" * 8, b"\xff" * 64])
    with pytest.raises(TelemetryReadError, match="none is valid GPMF"):
        read_clip(path)


@pytest.mark.parametrize("damage", ["truncated", "random", "missing"])
def test_unreadable_files_are_a_clear_error(tmp_path: Path, gopro_media: Path, damage: str) -> None:
    path = tmp_path / "GX010002.MP4"
    if damage == "truncated":
        path.write_bytes((gopro_media / "max-heromode.mp4").read_bytes()[:2_000_000])
    elif damage == "random":
        path.write_bytes(random.Random(3).randbytes(100_000))
    with pytest.raises(TelemetryReadError, match="not a readable video file"):
        read_clip(path)


@pytest.mark.parametrize("seed", range(6))
def test_flipped_bytes_never_crash_the_reader(tmp_path: Path, gopro_media: Path, seed: int) -> None:
    data = bytearray((gopro_media / "max-heromode.mp4").read_bytes())
    rng = random.Random(seed)
    for _ in range(3000):
        data[rng.randrange(len(data))] = rng.randrange(256)
    path = tmp_path / "GX010003.MP4"
    path.write_bytes(bytes(data))
    try:
        tel = read_clip(path)
    except TelemetryReadError as exc:
        assert exc.reason
    else:
        assert tel.status in set(TelemetryStatus)


def test_gpsu_parsing_refuses_bad_values() -> None:
    assert parse_gpsu("191118234514.000") == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC)
    assert parse_gpsu("260601100000.250") == datetime(2026, 6, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    for bad in ("000000000000.000", "991399999999.999", "", "garbage", "000101000000.000"):
        assert parse_gpsu(bad) is None, bad


def _gps(fix: list[int], lat: list[float], lon: list[float]) -> GpsSeries:
    n = len(fix)
    ones = np.ones(n)
    return GpsSeries(np.arange(n, dtype=float), np.array(lat), np.array(lon), ones * 4000,
                     ones, ones, np.array(fix))  # fmt: skip


def test_unlocked_gps_samples_are_dropped() -> None:
    # fix 0 (before the lock, in a dropout), and a "locked" sample still at 0°N 0°E
    gps = _gps([0, 0, 3, 2, 3, 0], [0, 0, 46.1, 46.2, 0, 46.3], [0, 0, 7.1, 7.2, 0, 7.3])
    kept, dropped = drop_unlocked(gps)
    assert dropped == 4
    assert kept.t.tolist() == [2.0, 3.0]
    assert kept.fix.tolist() == [3, 2]


def test_chapters_are_grouped_in_order_and_joined_on_one_timeline() -> None:
    names = ["GX020042.MP4", "GX010043.MP4", "GX010042.MP4", "DJI_0001.MP4", "GX030042.MP4"]
    assert group_chapters(names) == [
        ["GX010042.MP4", "GX020042.MP4", "GX030042.MP4"], ["GX010043.MP4"], ["DJI_0001.MP4"],
    ]  # fmt: skip

    def chapter(duration: float) -> ClipTelemetry:
        t = np.arange(0, duration, 0.5)
        return ClipTelemetry("c", TelemetryStatus.OK, duration,
                             accl=Vector3Series(t, np.ones((len(t), 3))))  # fmt: skip

    joined = join_chapters([chapter(4.0), chapter(3.0)])
    assert joined.duration_s == 7.0
    assert joined.accl is not None
    assert joined.accl.t.tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5]


@pytest.mark.parametrize("name", ["karma.mp4", "max-heromode.mp4"])
def test_real_footage_that_is_no_jump_goes_to_review(gopro_media: Path, name: str) -> None:
    path = gopro_media / name
    phases = detect(read_clip(path), clip_sound(path))
    assert phases.needs_review and not phases.has_freefall
    assert "no freefall found" in phases.reasons
