"""The chart of a jump's recording: altitude, acceleration and sound level on one time axis, at
most `MAX_POINTS` points over the whole recording (the clips end to end). Pure (numpy).

The `phases` step stores it in its output (``"timeline"``) so the dashboard can draw where the
marks are and an operator can move them. Each point is the mean of the samples in its bin (the
recording cut into equal bins, `t` their centres, in recording seconds):
  - ``altitude_m``: GPS altitude (WGS84) of samples with a lock (series.drop_unlocked left only
    those); null where the camera had none near the point;
  - ``accel_g``: the magnitude of ACCL in g, smoothed over `ACCEL_SMOOTH_S` first;
  - ``sound_db``: the total level of the sound (agents/telemetry/sound.py), dBFS.
A bin without a sample of its own takes the value interpolated between its neighbours when both
lie within `max(GAP_S, bin width)` of it, else null: a dropout shows as a gap, not as a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agents.telemetry.series import STANDARD_GRAVITY, ClipTelemetry, FloatArray, smooth
from agents.telemetry.sound import SoundSeries

MAX_POINTS = 600
MIN_STEP_S = 0.25  # bins are never narrower than the sound's window
ACCEL_SMOOTH_S = 0.5
GAP_S = 2.0  # a bin further than this from any sample is null


@dataclass(frozen=True)
class Timeline:
    """The chart's series, all of the same length as `t`; None where nothing was measured."""

    t: tuple[float, ...]
    altitude_m: tuple[float | None, ...]
    accel_g: tuple[float | None, ...]
    sound_db: tuple[float | None, ...]

    def to_output(self) -> dict[str, list[float] | list[float | None]]:
        return {
            "t": list(self.t),
            "altitude_m": list(self.altitude_m),
            "accel_g": list(self.accel_g),
            "sound_db": list(self.sound_db),
        }


def grid(recording_s: float, max_points: int = MAX_POINTS) -> FloatArray:
    """Bin edges over [0, recording_s]: at most `max_points` bins, none under MIN_STEP_S."""
    if not math.isfinite(recording_s) or recording_s <= 0:
        return np.zeros(0)
    n = max(1, min(max_points, math.ceil(recording_s / MIN_STEP_S)))
    return np.linspace(0.0, recording_s, n + 1)


def resample(t: FloatArray, v: FloatArray, edges: FloatArray, gap_s: float = GAP_S) -> FloatArray:
    """Mean of `v` per bin of `edges` (NaN where no sample is near, see the module doc)."""
    n = len(edges) - 1
    if n <= 0:
        return np.zeros(0)
    out = np.full(n, np.nan)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if not len(t):
        return out
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    idx = np.searchsorted(edges, t, side="right") - 1
    idx[t == edges[-1]] = n - 1  # the last edge belongs to the last bin
    inside = (idx >= 0) & (idx < n)
    counts = np.bincount(idx[inside], minlength=n)
    sums = np.bincount(idx[inside], weights=v[inside], minlength=n)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    centres = (edges[:-1] + edges[1:]) / 2
    empty = np.flatnonzero(~has)
    if len(empty):
        reach = max(gap_s, float(edges[1] - edges[0]))
        at = centres[empty]
        right = np.searchsorted(t, at)
        before = np.where(right > 0, at - t[np.maximum(right - 1, 0)], np.inf)
        after = np.where(right < len(t), t[np.minimum(right, len(t) - 1)] - at, np.inf)
        near = (before <= reach) & (after <= reach)
        out[empty[near]] = np.interp(at[near], t, v)
    return out


def _accel_g(tel: ClipTelemetry | None) -> tuple[FloatArray, FloatArray] | None:
    if tel is None or tel.accl is None or tel.accl.count == 0:
        return None
    g = tel.accl.magnitude / STANDARD_GRAVITY
    width = round(tel.accl.rate_hz * ACCEL_SMOOTH_S)
    return tel.accl.t, smooth(g, width)


def _values(x: FloatArray, digits: int) -> tuple[float | None, ...]:
    return tuple(None if not math.isfinite(val) else round(float(val), digits) for val in x)


def timeline(
    tel: ClipTelemetry | None,
    sound: SoundSeries | None,
    recording_s: float,
    max_points: int = MAX_POINTS,
) -> Timeline:
    """The chart of a recording of `recording_s` seconds from its joined telemetry and sound
    (either may be None: its series is then all null)."""
    edges = grid(recording_s, max_points)
    n = max(len(edges) - 1, 0)
    nothing = np.full(n, np.nan)
    alt = (
        resample(tel.gps.t, tel.gps.alt, edges)
        if tel is not None and tel.gps is not None and tel.gps.count
        else nothing
    )
    accel = _accel_g(tel)
    acc = resample(accel[0], accel[1], edges) if accel is not None else nothing
    snd = resample(sound.t, sound.total_db, edges) if sound is not None and sound.count else nothing
    centres = (edges[:-1] + edges[1:]) / 2 if n else np.zeros(0)
    return Timeline(
        t=tuple(round(float(c), 3) for c in centres),
        altitude_m=_values(alt, 1),
        accel_g=_values(acc, 3),
        sound_db=_values(snd, 1),
    )
