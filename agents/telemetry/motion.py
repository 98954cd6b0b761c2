"""Exit, opening and landing from telemetry: the accelerometer, confirmed by GPS where the camera
has it. Pure (numpy); `agents/telemetry/phases.py` fuses this with the sound.

Exit: the specific force leaves ~1 g for a sustained drop (< 0.6 g for a second or more) after
steady flight, and the GPS vertical speed passes 25 m/s within seconds; of several such dips the
strongest (an air pocket is shorter and shallower). Opening: the first shock over 1.3 g at least
5 s after the exit, with the vertical speed falling to canopy speeds. Landing: an impact followed
by stillness, near where the altitude stops changing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.telemetry.marks import REVIEW_BELOW, Detection, Mark, MarkKind, Source
from agents.telemetry.series import (
    STANDARD_GRAVITY,
    ClipTelemetry,
    FloatArray,
    GpsSeries,
    runs,
    smooth,
)

GRID_HZ = 10.0  # the accelerometer is averaged into bins of this rate before any decision
EXIT_BELOW_G = 0.6  # a freefall dip goes below this ...
EXIT_MIN_S = 1.0  # ... for at least this long
EXIT_ONSET_G = 0.9  # the exit is the last moment before the dip at or above this
STEADY_G = (0.8, 1.2)  # "steady flight": the median force over the 15 s before the exit
OPENING_ABOVE_G = 1.3  # the opening shock is above this ...
OPENING_MIN_S = 0.5  # ... for at least this long
OPENING_ONSET_G = 1.15  # the opening is the last moment before the shock at or below this
MIN_FREEFALL_S = 5.0  # a shock sooner than this after exit is the drogue, not the opening
LANDING_IMPACT_G = 1.6  # a landing impact peaks above this
STILL_STD_G = 0.06  # after landing the force varies less than this ...
STILL_S = 5.0  # ... over this long
FREEFALL_MIN_DOWN_MS = 25.0  # GPS confirms freefall when the vertical speed passes this
FALL_WITHIN_S = 10.0  # ... within this long of the exit (~3 s at a normal exit)
CANOPY_MAX_DOWN_MS = 12.0  # ... and the opening when it falls below this
GROUND_MAX_MS = 1.0  # the altitude is "no longer changing" below this vertical speed
GPS_STILL_LAG_S = 1.5  # the slope window (±1.5 s) reports stillness this long after touchdown
RIVAL_MARGIN = 0.1  # a second exit candidate within this confidence of the best: not sure


@dataclass(frozen=True)
class _Grid:
    t: FloatArray  # bin centres
    mean_g: FloatArray
    max_g: FloatArray


def _grid(tel: ClipTelemetry) -> _Grid | None:
    if tel.accl is None or tel.accl.count < 10:
        return None
    mag = tel.accl.magnitude / STANDARD_GRAVITY
    idx = np.floor(tel.accl.t * GRID_HZ).astype(np.int64)
    idx -= idx.min()
    counts = np.bincount(idx)
    sums = np.bincount(idx, weights=mag)
    maxima = np.full(len(counts), np.nan)
    np.fmax.at(maxima, idx, mag)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    filled = np.interp(np.arange(len(mean)), np.flatnonzero(counts), mean[counts > 0])
    t = (np.arange(len(mean)) + 0.5) / GRID_HZ + np.floor(tel.accl.t.min() * GRID_HZ) / GRID_HZ
    return _Grid(t, smooth(filled, 3), np.nan_to_num(maxima, nan=1.0))


def vertical_speed(gps: GpsSeries, at: FloatArray, half_window_s: float = 1.5) -> FloatArray:
    """Downward speed (m/s, + falling) by a least-squares slope of altitude over ±half_window_s;
    NaN where fewer than 5 samples (a dropout)."""
    t, z = gps.t, gps.alt
    cs = [np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(t), t, z, t * t, t * z)]
    lo = np.searchsorted(t, at - half_window_s)
    hi = np.searchsorted(t, at + half_window_s)
    n, st, sz, stt, stz = (c[hi] - c[lo] for c in cs)
    den = n * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * stz - st * sz) / den
    return np.asarray(np.where((n >= 5) & (den > 0), -slope, np.nan), dtype=np.float64)


def _walk_back(start: int, ok: np.ndarray, limit: int) -> int:
    """The last index at or before `start` (at most `limit` back) where `ok` holds."""
    i = start
    while i > max(0, start - limit) and not ok[i]:
        i -= 1
    return i


def _exit(grid: _Grid, vz: FloatArray | None) -> tuple[Mark | None, str]:
    """The strongest sustained dip after steady flight (an air pocket is shorter and shallower
    than the exit); a rival dip nearly as strong makes the exit less sure."""
    candidates: list[tuple[float, int]] = []
    for a, b in runs(grid.mean_g < EXIT_BELOW_G):
        if (b - a) / GRID_HZ < EXIT_MIN_S:
            continue
        before = grid.mean_g[max(0, a - int(15 * GRID_HZ)) : max(0, a - int(2 * GRID_HZ))]
        if len(before) < 3 * GRID_HZ or not STEADY_G[0] <= np.median(before) <= STEADY_G[1]:
            continue
        onset = _walk_back(a, grid.mean_g >= EXIT_ONSET_G, int(4 * GRID_HZ))
        depth = float(np.clip((EXIT_BELOW_G - grid.mean_g[a:b].min()) / 0.3, 0, 1))
        conf = 0.45 + 0.3 * depth + 0.05 * min(1.0, (b - a) / GRID_HZ / 3)
        if vz is not None:
            after = vz[onset : onset + int(FALL_WITHIN_S * GRID_HZ)]
            if np.isfinite(after).any():
                if np.nanmax(after) < FREEFALL_MIN_DOWN_MS:
                    continue  # a dip without a fall: turbulence, a camera knock
                conf += 0.2
        candidates.append((conf, onset))
    if not candidates:
        return None, f"no sustained drop below {EXIT_BELOW_G} g after steady flight"
    candidates.sort(key=lambda c: (-c[0], c[1]))
    conf, onset = candidates[0]
    if len(candidates) > 1 and candidates[1][0] > conf - RIVAL_MARGIN:
        conf = min(conf, REVIEW_BELOW - 0.05)
    return Mark(MarkKind.EXIT, float(grid.t[onset]), min(conf, 1.0), Source.TELEMETRY), ""


def _opening(grid: _Grid, vz: FloatArray | None, exit_i: int) -> tuple[Mark | None, str]:
    start = exit_i + int(MIN_FREEFALL_S * GRID_HZ)
    high = grid.mean_g > OPENING_ABOVE_G
    high[:start] = False
    for a, b in runs(high):
        if (b - a) / GRID_HZ < OPENING_MIN_S:
            continue
        onset = _walk_back(a, grid.mean_g <= OPENING_ONSET_G, int(4 * GRID_HZ))
        peak = float(grid.mean_g[a:b].max())
        conf = 0.45 + 0.3 * float(np.clip((peak - OPENING_ABOVE_G) / 1.2, 0, 1))
        if vz is not None:
            before = vz[max(0, onset - int(5 * GRID_HZ)) : onset]
            after = vz[onset + int(3 * GRID_HZ) : onset + int(15 * GRID_HZ)]
            if np.isfinite(before).any() and np.isfinite(after).any():
                fell = np.nanmax(before) >= FREEFALL_MIN_DOWN_MS
                slowed = np.nanmin(after) <= CANOPY_MAX_DOWN_MS
                conf += 0.25 if fell and slowed else -0.2
        return Mark(MarkKind.OPENING, float(grid.t[onset]), float(np.clip(conf, 0, 1)),
                    Source.TELEMETRY), ""  # fmt: skip
    return None, f"no shock above {OPENING_ABOVE_G} g after the exit"


def _landing(grid: _Grid, vz: FloatArray | None, open_i: int) -> tuple[Mark | None, str]:
    start = open_i + int(10 * GRID_HZ)
    window = int(STILL_S * GRID_HZ)
    gps_t: int | None = None
    if vz is not None:
        still = np.abs(vz) < GROUND_MAX_MS
        still[:start] = False
        for a, b in runs(still):
            if b - a >= 5 * GRID_HZ:
                gps_t = int(a)
                break
    impacts = np.flatnonzero(grid.max_g > LANDING_IMPACT_G)
    impacts = impacts[impacts >= start]
    best: int | None = None
    for i in impacts:
        after = grid.mean_g[i + 5 : i + 5 + window]
        near_gps = gps_t is None or -6 * GRID_HZ <= i - gps_t <= 3 * GRID_HZ
        if len(after) >= 0.6 * window and np.std(after) < STILL_STD_G and near_gps:
            best = int(i)
            break
    if best is None:
        if gps_t is None:
            return None, "no impact followed by stillness after the opening"
        # altitude alone: sure enough to show, not to ship
        t = float(grid.t[gps_t]) - GPS_STILL_LAG_S
        return Mark(MarkKind.LANDING, t, REVIEW_BELOW - 0.1, Source.TELEMETRY), ""
    conf = 0.6 + 0.15 * float(np.clip((grid.max_g[best] - LANDING_IMPACT_G) / 1.0, 0, 1))
    if gps_t is not None:
        conf += 0.2
    return Mark(MarkKind.LANDING, float(grid.t[best]), min(conf, 1.0), Source.TELEMETRY), ""


def from_telemetry(tel: ClipTelemetry) -> Detection:
    grid = _grid(tel)
    if grid is None:
        return Detection(Source.TELEMETRY, notes=("no accelerometer samples",))
    vz = vertical_speed(tel.gps, grid.t) if tel.has_gps and tel.gps is not None else None
    notes: list[str] = [] if vz is not None else ["no GPS: accelerometer only"]
    exit_mark, why = _exit(grid, vz)
    if exit_mark is None:
        return Detection(Source.TELEMETRY, notes=(*notes, why))
    exit_i = int(np.searchsorted(grid.t, exit_mark.t))
    opening, why = _opening(grid, vz, exit_i)
    if opening is None:
        return Detection(Source.TELEMETRY, exit_mark, notes=(*notes, why))
    landing, why = _landing(grid, vz, int(np.searchsorted(grid.t, opening.t)))
    return Detection(Source.TELEMETRY, exit_mark, opening, landing,
                     tuple(notes + ([why] if why else [])))  # fmt: skip
