"""The chart of a recording (agents/telemetry/timeline.py) and the phases step's pure parts around
it (agents/jobs/phases_step.py: the recording's clips and timeline in the output, the edit of an
operator's marks). Pure: no files, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agents.edit import EditSettings
from agents.jobs import phases_step
from agents.jobs.phases_step import FootageClip, Recording
from agents.telemetry import timeline as tl
from agents.telemetry.profile import AUDIO_RATE_HZ, draw_params, generate
from agents.telemetry.series import (
    STANDARD_GRAVITY,
    ClipTelemetry,
    GpsSeries,
    TelemetryStatus,
    Vector3Series,
)
from agents.telemetry.sound import SoundSeries, band_energies
from storage.session_edit import StoredMarks


def steady_accl(duration_s: float, g: float = 1.0, rate: float = 200.0) -> Vector3Series:
    t = np.arange(0, duration_s, 1 / rate)
    xyz = np.zeros((len(t), 3))
    xyz[:, 2] = g * STANDARD_GRAVITY
    return Vector3Series(t, xyz)


def gps(t: np.ndarray, alt: np.ndarray) -> GpsSeries:
    n = len(t)
    return GpsSeries(
        t, np.full(n, 47.0), np.full(n, 8.0), alt, np.zeros(n), np.zeros(n), np.full(n, 3)
    )


def tel_of(duration_s: float, **series: object) -> ClipTelemetry:
    return ClipTelemetry("t", TelemetryStatus.OK, duration_s, **series)  # type: ignore[arg-type]


def test_the_chart_has_at_most_600_points_over_the_recording() -> None:
    chart = tl.timeline(tel_of(3600.0, accl=steady_accl(3600.0, rate=20)), None, 3600.0)
    assert len(chart.t) == tl.MAX_POINTS
    assert len(chart.accel_g) == len(chart.altitude_m) == len(chart.sound_db) == tl.MAX_POINTS
    assert 0 < chart.t[0] < chart.t[-1] < 3600.0
    assert all(b > a for a, b in zip(chart.t, chart.t[1:], strict=False))
    assert chart.t[0] == pytest.approx(3.0) and chart.t[-1] == pytest.approx(3597.0)


def test_a_short_recording_gets_bins_no_narrower_than_the_sound_window() -> None:
    chart = tl.timeline(None, None, 3.0)
    assert len(chart.t) == 12  # 3 s / 0.25 s
    assert chart.t[0] == pytest.approx(0.125)


def test_nothing_recorded_gives_nulls_and_no_recording_gives_nothing() -> None:
    chart = tl.timeline(None, None, 10.0)
    assert chart.altitude_m == chart.accel_g == chart.sound_db == (None,) * len(chart.t)
    empty = tl.timeline(None, None, 0.0).to_output()
    assert empty == {"t": [], "altitude_m": [], "accel_g": [], "sound_db": []}
    assert tl.timeline(None, None, float("nan")).t == ()


def test_accel_is_the_smoothed_magnitude_in_g() -> None:
    accl = steady_accl(100.0, g=1.0)
    # a freefall-like dip to 0.2 g from 40 to 50 s
    dip = (accl.t >= 40) & (accl.t < 50)
    accl.xyz[dip, 2] = 0.2 * STANDARD_GRAVITY
    chart = tl.timeline(tel_of(100.0, accl=accl), None, 100.0)
    t, g = np.array(chart.t), np.array(chart.accel_g, dtype=float)
    assert np.allclose(g[t < 35], 1.0, atol=1e-6)
    assert np.allclose(g[(t > 42) & (t < 48)], 0.2, atol=1e-6)
    assert np.all((g >= 0.2 - 1e-9) & (g <= 1.0 + 1e-9))  # smoothing never overshoots


def test_altitude_only_where_the_gps_had_a_lock() -> None:
    # locked from 10 s on (the reader drops unlocked samples), a dropout from 40 to 60 s
    t = np.arange(10.0, 100.0, 1 / 18)
    t = t[(t < 40) | (t >= 60)]
    alt = 4000.0 - 30.0 * t
    chart = tl.timeline(tel_of(100.0, gps=gps(t, alt)), None, 100.0)
    ts, alts = np.array(chart.t), chart.altitude_m
    for at, a in zip(ts, alts, strict=True):
        if at < 10 - tl.GAP_S or 40 + tl.GAP_S < at < 60 - tl.GAP_S:
            assert a is None, at
        elif 11 < at < 39 or 61 < at < 99:
            assert a == pytest.approx(4000.0 - 30.0 * at, abs=1.0), at  # bin mean


def test_sparse_samples_are_interpolated_between_near_neighbours() -> None:
    # GPS at 1 Hz on a 0.25 s grid: bins between samples take the interpolated value
    t = np.arange(0.0, 20.0, 1.0)
    chart = tl.timeline(tel_of(20.0, gps=gps(t, 100.0 + t)), None, 20.0)
    assert None not in chart.altitude_m[:76]  # to 19 s, the last sample
    alts = np.array(chart.altitude_m[:76], dtype=float)
    # a bin holding a sample shows it (up to 0.125 s off its centre), the rest are interpolated
    assert np.allclose(alts, 100.0 + np.array(chart.t[:76]), atol=0.2)
    assert alts[1] == pytest.approx(100.4)  # 0.375 s: between the samples at 0 and 1 s


def test_sound_is_the_total_level() -> None:
    t = np.arange(0.125, 30.0, 0.25)
    total = np.where(t < 15, -20.0, -50.0)
    sound = SoundSeries(t, total - 10, total - 5, total)
    chart = tl.timeline(None, sound, 30.0)
    assert chart.sound_db[0] == -20.0 and chart.sound_db[-1] == -50.0
    assert chart.accel_g == (None,) * len(chart.t)


def test_a_synthetic_jump_draws_its_climb_fall_and_landing() -> None:
    profile = generate(draw_params(7, compress=0.2))
    truth = profile.truth
    sound = band_energies(profile.audio, AUDIO_RATE_HZ)
    chart = tl.timeline(profile.telemetry(), sound, truth.duration_s)
    t = np.array(chart.t)
    g = np.array([np.nan if v is None else v for v in chart.accel_g])
    alt = np.array([np.nan if v is None else v for v in chart.altitude_m])
    # weightless off the door, back towards 1 g as the drag builds up to terminal speed
    off_the_door = (t > truth.exit_s) & (t < truth.exit_s + 3)
    assert np.nanmin(g[off_the_door]) < 0.6
    assert np.nanmedian(g[t < truth.exit_s - 5]) == pytest.approx(1.0, abs=0.1)
    at_exit = np.nanmean(alt[(t > truth.exit_s - 3) & (t < truth.exit_s)])
    assert at_exit > np.nanmean(alt[t > truth.landing_s]) + 500
    assert chart.altitude_m[0] is None  # before the GPS had a lock
    assert all(v is not None for v in chart.sound_db)
    json.dumps(chart.to_output(), allow_nan=False)  # strict JSON: nulls, never NaN


# --- the phases step's pure parts ---------------------------------------------------------------

CLIPS = (
    FootageClip(11, "GX010002.MP4", Path("a.mp4"), 40.0),
    FootageClip(12, "GX020002.MP4", Path("b.mp4"), 25.5),
)
WHEN = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def test_the_output_carries_the_recording_its_clips_and_timeline() -> None:
    rec = Recording(CLIPS, tel_of(65.5, accl=steady_accl(65.5)), None, ())
    out = phases_step.recording_output(rec)
    assert out["recording_s"] == 65.5
    assert out["clips"] == [
        {"file_id": 11, "name": "GX010002.MP4", "start_s": 0.0, "duration_s": 40.0},
        {"file_id": 12, "name": "GX020002.MP4", "start_s": 40.0, "duration_s": 25.5},
    ]
    chart = out["timeline"]
    assert isinstance(chart, dict)
    assert set(chart) == {"t", "altitude_m", "accel_g", "sound_db"}
    assert len(chart["t"]) == 262 and chart["t"][-1] < 65.5


def test_operator_marks_make_a_sure_edit_with_a_note() -> None:
    marks = StoredMarks("s", 20.0, 45.0, 60.0, "admin", WHEN, "c1")
    rec = Recording(CLIPS, None, None, ("GX020002.MP4: audio not readable (x)",))
    record = phases_step.from_marks(rec, marks, EditSettings(door_s=5, after_landing_s=2))
    out = record.to_output()
    assert out["needs_review"] is False and out["reasons"] == []
    assert out["marks"] == {
        "exit": {"t": 20.0, "confidence": 1.0, "source": "operator"},
        "opening": {"t": 45.0, "confidence": 1.0, "source": "operator"},
        "landing": {"t": 60.0, "confidence": 1.0, "source": "operator"},
    }
    assert record.notes[-1] == "marks set by admin at 2026-12-01T18:00:00+00:00"
    assert record.spans is not None
    # 15 s .. 62 s over two clips: split at the chapter boundary
    assert [(s.file_id, s.start, s.end) for s in record.spans] == [
        (11, 15.0, 40.0),
        (12, 0.0, pytest.approx(22.0)),
    ]
    assert record.total_s == pytest.approx(47.0)


def test_operator_marks_without_landing_run_to_the_end() -> None:
    marks = StoredMarks("s", 20.0, 45.0, None, "admin", WHEN, "c1")
    record = phases_step.from_marks(Recording(CLIPS, None, None, ()), marks, EditSettings(door_s=5))
    assert record.needs_review is False
    assert record.total_s == pytest.approx(65.5 - 15.0)
    assert record.marks["landing"] is None


def test_operator_marks_outside_the_recording_go_to_review_not_to_a_crash() -> None:
    marks = StoredMarks("s", 70.0, 80.0, None, "admin", WHEN, "c1")  # the clips changed since
    record = phases_step.from_marks(Recording(CLIPS, None, None, ()), marks, EditSettings())
    assert record.needs_review is True and record.spans is None
    assert any("outside the recording" in r for r in record.reasons)
