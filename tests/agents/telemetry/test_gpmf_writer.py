"""The GPMF writer: KLV bytes as GoPro documents them, and the round trip of a synthetic jump
written as MP4 chapters and read back by the reader (telemetry, sound and phases)."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
from telemetry_media import video_with_gpmd

from agents.telemetry import gpmf_writer as w
from agents.telemetry.audio_decode import DECODE_RATE_HZ, decode_mono
from agents.telemetry.gpmf_reader import read_clip, read_recording
from agents.telemetry.phases import detect
from agents.telemetry.profile import JumpProfile, draw_params, generate
from agents.telemetry.series import TelemetryStatus
from agents.telemetry.sound import band_energies
from agents.telemetry.synthetic import ACCL_SCALE, write_jump


def test_klv_header_is_key_type_size_repeat_big_endian_and_padded() -> None:
    item = w.numbers(b"ACCL", "s", np.array([[1, -2, 3]]))
    assert item[:8] == b"ACCLs" + struct.pack(">BH", 6, 1)
    assert item[8:14] == struct.pack(">3h", 1, -2, 3)
    assert len(item) % 4 == 0 and item[14:] == b"\x00\x00"
    name = w.string(b"STNM", "Accelerometer")
    assert name[:8] == b"STNMc\x01\x00\x0d" and len(name) == 8 + 16


def test_nested_items_carry_their_byte_length() -> None:
    inner = w.numbers(b"TSMP", "L", 200)
    strm = w.nest(b"STRM", [inner])
    assert strm[:8] == b"STRM\x00\x01" + struct.pack(">H", len(inner))
    with pytest.raises(ValueError, match="4 bytes"):
        w.klv(b"GPS", "l", 4, 1, b"\x00" * 4)
    with pytest.raises(ValueError, match="is not"):
        w.klv(b"GPS5", "l", 20, 2, b"\x00" * 20)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, short_jump: JumpProfile) -> list[Path]:
    directory = tmp_path_factory.mktemp("jump")
    return write_jump(short_jump, directory, recording=12, chapter_s=40.0, with_cori=True,
                      bad_gps_time_payload=3)  # fmt: skip


def test_round_trip_reads_back_what_was_written(
    written: list[Path], short_jump: JumpProfile
) -> None:
    assert [p.name for p in written] == ["GX010012.MP4", "GX020012.MP4", "GX030012.MP4"]
    tel = read_recording(written)
    assert tel.duration_s == pytest.approx(short_jump.truth.duration_s, abs=0.3)
    assert tel.camera == "GoPro synthetic"
    assert tel.accl is not None and tel.gyro is not None and tel.cori is not None
    assert tel.accl.count == short_jump.accl.count
    assert tel.accl.rate_hz == pytest.approx(200.0, abs=0.5)
    # values come back within the quantisation of SCAL, times within a sample
    assert np.abs(tel.accl.xyz - short_jump.accl.xyz).max() <= 0.5 / ACCL_SCALE + 1e-9
    assert np.abs(tel.accl.t - short_jump.accl.t).max() < 0.01
    assert tel.gps is not None
    locked = short_jump.gps.fix > 0
    assert 0 < tel.gps.count <= int(locked.sum())
    assert tel.dropped_unlocked == short_jump.gps.count - tel.gps.count
    assert set(tel.gps.fix.tolist()) == {3}
    assert tel.bad_gps_times == 1  # payload 3's GPSU was written as zeros
    nearest = np.abs(short_jump.gps.t[None, :] - tel.gps.t[:200, None]).argmin(axis=1)
    assert np.allclose(tel.gps.alt[:200], short_jump.gps.alt[nearest], atol=0.01)
    assert np.allclose(tel.gps.lat[:200], short_jump.gps.lat[nearest], atol=1e-7)


def test_each_chapter_starts_at_zero_and_the_join_shifts_it(written: list[Path]) -> None:
    second = read_clip(written[1])
    assert second.accl is not None and second.accl.t[0] < 0.01
    joined = read_recording(written)
    assert joined.accl is not None and joined.accl.t[8000] == pytest.approx(40.0, abs=0.01)
    assert np.all(np.diff(joined.accl.t) > 0)


def test_round_trip_phases_match_the_truth(written: list[Path], short_jump: JumpProfile) -> None:
    tel = read_recording(written)
    samples = [decode_mono(p) for p in written]
    audio = np.concatenate([s for s in samples if s is not None])
    phases = detect(tel, band_energies(audio, DECODE_RATE_HZ))
    truth = short_jump.truth
    assert phases.exit is not None and phases.opening is not None and phases.landing is not None
    assert phases.exit.t == pytest.approx(truth.exit_s, abs=1.0)
    assert phases.opening.t == pytest.approx(truth.opening_s, abs=2.0)
    assert phases.landing.t == pytest.approx(truth.landing_s, abs=3.0)
    assert not phases.needs_review, phases.reasons


def test_gps9_has_a_fix_per_sample(tmp_path: Path) -> None:
    """HERO11+ write GPS9 (lat, lon, alt, 2D, 3D, days, secs, DOP, fix): no GPSF per payload."""
    rows = np.array([[46.1, 7.1, 4000.0, 40.0, 41.0, 9600, 36000.0, 1.5, fix]
                     for fix in (0, 0, 3, 3, 2, 3, 0, 3, 3, 3)])  # fmt: skip
    rows[rows[:, 8] == 0, :5] = 0.0  # what a camera writes without a lock
    scale = (10_000_000, 10_000_000, 1000, 1000, 100, 1, 1000, 100, 1)
    stream = w.SensorStream(b"GPS9", "GPS", b"deg", rows, scale, "l")
    data = w.payload("HERO12", [w.sensor_stream(stream, len(rows))])
    tel = read_clip(video_with_gpmd(tmp_path / "GX010009.MP4", [data]))
    assert tel.gps is not None
    assert tel.gps.fix.tolist() == [3, 3, 2, 3, 3, 3, 3]
    assert tel.dropped_unlocked == 3
    assert tel.gps.alt == pytest.approx(np.full(7, 4000.0))


def test_a_jump_without_telemetry_is_written_without_a_gpmd_track(tmp_path: Path) -> None:
    profile = generate(dataclasses.replace(draw_params(8, compress=0.1), has_telemetry=False))
    paths = write_jump(profile, tmp_path)
    assert read_recording(paths).status is TelemetryStatus.NO_TELEMETRY
    assert decode_mono(paths[0]) is not None
