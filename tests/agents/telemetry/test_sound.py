"""Band energies of audio: the engine drone in the low band, wind noise in the wind band."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from agents.telemetry.audio_decode import DECODE_RATE_HZ, clip_sound, decode_mono
from agents.telemetry.sound import WINDOW_S, band_energies

RATE = 16_000


def test_a_drone_is_low_band_and_noise_is_wind_band() -> None:
    t = np.arange(RATE * 2) / RATE
    drone = 0.3 * np.sin(2 * np.pi * 90 * t)
    noise = 0.3 * np.random.default_rng(1).normal(size=len(t))
    d, n = band_energies(drone, RATE), band_energies(noise, RATE)
    assert d.count == n.count == int(2 / WINDOW_S)
    assert d.t[0] == pytest.approx(WINDOW_S / 2)
    assert np.all(d.low_db > d.wind_db + 40)
    assert np.all(n.wind_db > n.low_db + 10)
    # 0.3 amplitude white noise: RMS power 0.09 -> -10.5 dBFS; the 2-6 kHz band holds half of it
    assert np.median(n.total_db) == pytest.approx(-10.5, abs=0.3)
    assert np.median(n.wind_db) == pytest.approx(-13.5, abs=0.5)


def test_silence_and_short_input_do_not_break_it() -> None:
    silent = band_energies(np.zeros(RATE), RATE)
    assert silent.count == 4 and np.all(silent.total_db == -120.0)
    assert band_energies(np.zeros(100), RATE).count == 0
    with pytest.raises(ValueError, match="mono"):
        band_energies(np.zeros((2, RATE)), RATE)
    with pytest.raises(ValueError, match="sample rate"):
        band_energies(np.zeros(RATE), 8000)


def _write_audio(path: Path, samples: np.ndarray, rate: int, layout: str = "stereo") -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout=layout)
        stream.time_base = Fraction(1, rate)
        planes = np.tile(samples.astype(np.float32), (2 if layout == "stereo" else 1, 1))
        for k in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(planes[:, k : k + 1024].copy(), format="fltp",
                                               layout=layout)  # fmt: skip
            frame.sample_rate, frame.pts = rate, k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_a_file_is_decoded_to_mono_at_the_decode_rate(tmp_path: Path) -> None:
    rate = 48_000
    t = np.arange(rate * 3) / rate
    _write_audio(tmp_path / "a.mp4", 0.3 * np.sin(2 * np.pi * 90 * t), rate)
    samples = decode_mono(tmp_path / "a.mp4")
    assert samples is not None
    assert len(samples) == pytest.approx(3 * DECODE_RATE_HZ, rel=0.02)
    sound = clip_sound(tmp_path / "a.mp4")
    assert sound is not None and np.median(sound.low_db) > np.median(sound.wind_db) + 30


def test_a_file_without_audio_has_no_sound(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "v.mp4"), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=5)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    assert clip_sound(tmp_path / "v.mp4") is None
