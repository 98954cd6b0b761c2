"""The audio envelope of a clip: band energies per window, from a mono sample array. Pure (numpy).

Three bands, in dB relative to full scale, per `WINDOW_S` window: `low` (40–250 Hz, the aircraft's
engine drone), `wind` (2–6 kHz, broadband wind noise, loud in freefall, gone after the opening;
above most speech) and `total` (RMS). `agents/telemetry/audio_decode.py` decodes a file to the
sample array this takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.telemetry.series import FloatArray

WINDOW_S = 0.25
LOW_BAND_HZ = (40.0, 250.0)
WIND_BAND_HZ = (2000.0, 6000.0)
FLOOR_DB = -120.0  # silence, so log10 never sees zero


@dataclass(frozen=True)
class SoundSeries:
    """Band levels per window; `t` is each window's centre in seconds."""

    t: FloatArray
    low_db: FloatArray
    wind_db: FloatArray
    total_db: FloatArray
    window_s: float = WINDOW_S

    @property
    def count(self) -> int:
        return len(self.t)


def _db(power: FloatArray) -> FloatArray:
    return np.asarray(
        np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB), dtype=np.float64
    )


def band_energies(
    samples: npt.NDArray[np.floating], rate_hz: int, window_s: float = WINDOW_S
) -> SoundSeries:
    """Band levels of mono `samples` (any float dtype, [-1, 1]) at `rate_hz`."""
    if samples.ndim != 1:
        raise ValueError(f"band_energies takes mono samples, got shape {samples.shape}")
    if rate_hz < 2 * WIND_BAND_HZ[1]:
        raise ValueError(f"a sample rate of {rate_hz} Hz cannot hold the wind band {WIND_BAND_HZ}")
    size = round(window_s * rate_hz)
    count = len(samples) // size
    empty = np.zeros(0)
    if count == 0:
        return SoundSeries(empty, empty, empty, empty, window_s)
    frames = np.asarray(samples[: count * size], dtype=np.float64).reshape(count, size)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1.0 / rate_hz)
    norm = (np.hanning(size) ** 2).sum() * size / 2

    def band(lo: float, hi: float) -> FloatArray:
        sel = (freqs >= lo) & (freqs < hi)
        return np.asarray(spectrum[:, sel].sum(axis=1) / norm, dtype=np.float64)

    t = (np.arange(count, dtype=np.float64) + 0.5) * window_s
    total = np.mean(frames**2, axis=1)
    return SoundSeries(t, _db(band(*LOW_BAND_HZ)), _db(band(*WIND_BAND_HZ)), _db(total), window_s)
