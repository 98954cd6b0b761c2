"""Decode a clip's first audio stream with PyAV to mono float samples at a fixed rate: the I/O edge
of `agents/telemetry/sound.py`."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from agents.telemetry.series import FloatArray
from agents.telemetry.sound import SoundSeries, band_energies

DECODE_RATE_HZ = 16_000  # enough for the 2–6 kHz wind band; small enough for 15-minute clips


class AudioDecodeError(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def decode_mono(path: Path, rate_hz: int = DECODE_RATE_HZ) -> FloatArray | None:
    """The samples, or None when the file has no audio stream; raises AudioDecodeError."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise AudioDecodeError(path, f"not a readable media file ({exc})") from exc
    with container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise AudioDecodeError(path, f"the audio stream is damaged ({exc})") from exc
    if not chunks:
        return np.zeros(0)
    return np.asarray(np.concatenate(chunks), dtype=np.float64)


def clip_sound(path: Path) -> SoundSeries | None:
    """Band energies of a clip's audio; None without an audio stream."""
    samples = decode_mono(path)
    return None if samples is None else band_energies(samples, DECODE_RATE_HZ)
