"""Phase detection on synthetic series: telemetry and sound, each alone, disagreeing, and jumps
with no freefall in them. Pure: profiles in memory, no files."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.telemetry.phases import (
    REVIEW_BELOW,
    Detection,
    Mark,
    MarkKind,
    Phase,
    Source,
    detect,
    fuse,
    vertical_speed,
)
from agents.telemetry.profile import AUDIO_RATE_HZ, JumpProfile, draw_params, generate
from agents.telemetry.series import (
    STANDARD_GRAVITY,
    ClipTelemetry,
    GpsSeries,
    TelemetryStatus,
    Vector3Series,
)
from agents.telemetry.sound import SoundSeries, band_energies

SEEDS = range(100, 106)


def _jump(seed: int, **kw: bool) -> JumpProfile:
    params = dataclasses.replace(draw_params(seed, compress=0.3, **kw), air_pocket_s=None,
                                 muffled=False)  # fmt: skip
    return generate(params)


def _sound(p: JumpProfile) -> SoundSeries:
    return band_energies(p.audio, AUDIO_RATE_HZ)


def _within(p: JumpProfile, phases_exit: Mark | None, phases_open: Mark | None,
            phases_land: Mark | None) -> None:  # fmt: skip
    assert phases_exit is not None and phases_open is not None and phases_land is not None
    assert abs(phases_exit.t - p.truth.exit_s) <= 1.0
    assert abs(phases_open.t - p.truth.opening_s) <= 2.0
    assert abs(phases_land.t - p.truth.landing_s) <= 3.0


@pytest.mark.parametrize("seed", SEEDS)
def test_telemetry_and_sound_agree_and_ship(seed: int) -> None:
    p = _jump(seed)
    phases = detect(p.telemetry(), _sound(p))
    _within(p, phases.exit, phases.opening, phases.landing)
    assert not phases.needs_review, phases.reasons
    assert phases.exit is not None and phases.exit.source is Source.FUSED
    assert phases.exit.t < phases.opening.t < phases.landing.t  # type: ignore[union-attr]
    assert phases.phase_at(phases.exit.t - 0.1) is Phase.PLANE
    assert phases.phase_at(phases.exit.t + 0.1) is Phase.FREEFALL
    assert phases.phase_at(p.truth.opening_s + 10) is Phase.CANOPY
    assert phases.phase_at(p.truth.duration_s) is Phase.GROUND


@pytest.mark.parametrize("seed", SEEDS)
def test_telemetry_alone_finds_the_marks(seed: int) -> None:
    p = _jump(seed)
    phases = detect(p.telemetry(), None)
    _within(p, phases.exit, phases.opening, phases.landing)
    assert phases.sound is None and phases.exit is not None
    assert phases.exit.source is Source.TELEMETRY


@pytest.mark.parametrize("seed", SEEDS)
def test_accelerometer_without_gps_still_finds_exit_and_opening(seed: int) -> None:
    p = _jump(seed, has_gps=False)
    phases = detect(p.telemetry(), None)
    assert phases.telemetry is not None and "no GPS" in phases.telemetry.notes[0]
    _within(p, phases.exit, phases.opening, phases.landing)


@pytest.mark.parametrize("seed", SEEDS)
def test_sound_alone_finds_the_marks(seed: int) -> None:
    p = _jump(seed, has_telemetry=False)
    assert p.telemetry().status is TelemetryStatus.NO_TELEMETRY
    phases = detect(p.telemetry(), _sound(p))
    _within(p, phases.exit, phases.opening, phases.landing)
    assert phases.exit is not None and phases.exit.source is Source.SOUND


def test_gps_dropouts_leave_gaps_not_wrong_speeds() -> None:
    p = _jump(101)
    tel = p.telemetry()
    assert tel.gps is not None and tel.dropped_unlocked > 0
    at = np.arange(0, p.truth.duration_s, 0.5)
    vz = vertical_speed(tel.gps, at)
    freefall = (at > p.truth.exit_s + 10) & (at < p.truth.opening_s - 1)
    assert np.nanmedian(vz[freefall]) == pytest.approx(p.params.terminal_ms, abs=4)
    assert np.isnan(vz[at < p.params.gps_lock_s - 2]).all()  # no lock yet: no speed at all


def test_disagreeing_sources_go_to_review_with_the_reason() -> None:
    p = _jump(102)
    sound = _sound(p)
    late = dataclasses.replace(sound, t=sound.t + 8.0)  # as if the sound were of another moment
    phases = detect(p.telemetry(), late)
    assert phases.needs_review
    assert any(r.startswith("exit: telemetry says") for r in phases.reasons), phases.reasons
    assert phases.exit is not None and phases.exit.confidence <= 0.5
    assert phases.exit.t == pytest.approx(p.truth.exit_s, abs=1.0)  # telemetry's time is kept


def _still(seconds: float, seed: int = 0) -> ClipTelemetry:
    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 1 / 200)
    xyz = np.tile([STANDARD_GRAVITY, 0, 0], (len(t), 1)) + rng.normal(0, 0.3, (len(t), 3))
    gps_t = np.arange(0, seconds, 1 / 18)
    ones = np.ones(len(gps_t))
    gps = GpsSeries(gps_t, ones * 46, ones * 7, ones * 500 + rng.normal(0, 1, len(gps_t)),
                    ones * 0, ones * 0, np.full(len(gps_t), 3))  # fmt: skip
    return ClipTelemetry("ground", TelemetryStatus.OK, seconds, accl=Vector3Series(t, xyz), gps=gps)


def test_a_recording_without_freefall_is_never_shipped() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.05, 120 * AUDIO_RATE_HZ)
    phases = detect(_still(120), band_energies(noise, AUDIO_RATE_HZ))
    assert phases.needs_review and not phases.has_freefall
    assert "no freefall found" in phases.reasons
    assert any("no sustained drop" in r for r in phases.reasons)


def test_neither_source_is_review() -> None:
    phases = detect(None, None)
    assert phases.needs_review and "no freefall found" in phases.reasons


def test_low_confidence_goes_to_review() -> None:
    weak = Detection(Source.SOUND, Mark(MarkKind.EXIT, 10, 0.4, Source.SOUND),
                     Mark(MarkKind.OPENING, 60, 0.9, Source.SOUND),
                     Mark(MarkKind.LANDING, 300, 0.9, Source.SOUND))  # fmt: skip
    phases = fuse(None, weak)
    assert phases.needs_review
    assert phases.reasons == (f"exit: confidence 0.40 < {REVIEW_BELOW}",)


def test_marks_out_of_order_go_to_review() -> None:
    backwards = Detection(Source.TELEMETRY, Mark(MarkKind.EXIT, 70, 0.9, Source.TELEMETRY),
                          Mark(MarkKind.OPENING, 60, 0.9, Source.TELEMETRY),
                          Mark(MarkKind.LANDING, 300, 0.9, Source.TELEMETRY))  # fmt: skip
    phases = fuse(backwards, None)
    assert phases.needs_review and phases.reasons[0].startswith("the marks are out of order")


def test_an_air_pocket_in_the_plane_is_not_an_exit() -> None:
    params = dataclasses.replace(draw_params(103, compress=0.3), air_pocket_s=0.5, muffled=False)
    p = generate(params)
    phases = detect(p.telemetry(), _sound(p))
    assert phases.exit is not None
    assert phases.exit.t == pytest.approx(p.truth.exit_s, abs=1.0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.0, 5.0), min_size=20, max_size=400),
    st.lists(st.floats(-100.0, 0.0), min_size=0, max_size=400),
)
def test_any_series_gives_ordered_marks_or_review(force_g: list[float], wind: list[float]) -> None:
    t = np.arange(len(force_g)) * 0.5
    accl = Vector3Series(t, np.outer(np.array(force_g) * STANDARD_GRAVITY, [1.0, 0, 0]))
    tel = ClipTelemetry("x", TelemetryStatus.OK, float(t[-1]), accl=accl)
    w = np.array(wind)
    sound = SoundSeries(np.arange(len(w)) * 0.25, w - 10, w, w) if len(w) else None
    phases = detect(tel, sound)
    marks = [m for m in (phases.exit, phases.opening, phases.landing) if m is not None]
    in_order = all(a.t < b.t for a, b in itertools.pairwise(marks))
    assert phases.needs_review or (in_order and len(marks) == 3)
    assert all(0.0 <= m.confidence <= 1.0 for m in marks)
