"""The phases of a jump from its time series: plane > exit > freefall > opening > canopy > landing >
ground. Pure: numpy over `ClipTelemetry` and `SoundSeries`; each mark has a time and a confidence
in [0, 1], and the marks never go backwards (exit < opening < landing).

Telemetry (the physics): exit is the specific force leaving ~1 g for a sustained drop (< 0.6 g for
a second or more) after steady flight, confirmed by the GPS vertical speed rising past ~25–40 m/s;
opening is the deceleration shock (> 1.3 g, sustained) with the vertical speed falling to ~5 m/s;
landing is the impact with the altitude no longer changing. Sound: freefall is a long run of loud
broadband wind; exit is where the engine drone falls away at its start, opening where the wind
falls at its end, landing the thump after which it is quieter still.

`fuse` keeps the telemetry's times (finer), raises the confidence where sound agrees, and sends the
jump to review (`needs_review`, with reasons) where they disagree, a mark is missing or a
confidence is below `REVIEW_BELOW`: an edit without freefall is never shipped.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import numpy as np

from agents.telemetry.series import STANDARD_GRAVITY, ClipTelemetry, FloatArray, GpsSeries
from agents.telemetry.sound import SoundSeries

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
REVIEW_BELOW = 0.6  # a mark less sure than this sends the jump to review
RIVAL_MARGIN = 0.1  # a second exit candidate within this confidence of the best: not sure
AGREE_S = {"exit": 1.5, "opening": 2.5, "landing": 4.0}  # telemetry and sound agree within


class Phase(enum.StrEnum):
    PLANE = "plane"
    FREEFALL = "freefall"
    CANOPY = "canopy"
    GROUND = "ground"


class MarkKind(enum.StrEnum):
    EXIT = "exit"
    OPENING = "opening"
    LANDING = "landing"


class Source(enum.StrEnum):
    TELEMETRY = "telemetry"
    SOUND = "sound"
    FUSED = "fused"


@dataclass(frozen=True)
class Mark:
    kind: MarkKind
    t: float
    confidence: float
    source: Source

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")


@dataclass(frozen=True)
class Detection:
    """What one source found; a missing mark is None, with a note saying why."""

    source: Source
    exit: Mark | None = None
    opening: Mark | None = None
    landing: Mark | None = None
    notes: tuple[str, ...] = ()

    def mark(self, kind: MarkKind) -> Mark | None:
        return {MarkKind.EXIT: self.exit, MarkKind.OPENING: self.opening,
                MarkKind.LANDING: self.landing}[kind]  # fmt: skip


@dataclass(frozen=True)
class JumpPhases:
    """The fused marks, whether a person must look, and what each source said."""

    exit: Mark | None
    opening: Mark | None
    landing: Mark | None
    needs_review: bool
    reasons: tuple[str, ...] = ()
    telemetry: Detection | None = None
    sound: Detection | None = None

    @property
    def has_freefall(self) -> bool:
        return self.exit is not None and self.opening is not None

    def phase_at(self, t: float) -> Phase:
        if self.exit is None or t < self.exit.t:
            return Phase.PLANE
        if self.opening is None or t < self.opening.t:
            return Phase.FREEFALL
        if self.landing is None or t < self.landing.t:
            return Phase.CANOPY
        return Phase.GROUND


# ---------------------------------------------------------------------------------- telemetry


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
    return _Grid(t, _smooth(filled, 3), np.nan_to_num(maxima, nan=1.0))


def _smooth(x: FloatArray, width: int) -> FloatArray:
    if width <= 1 or len(x) < width:
        return x
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.asarray(np.convolve(padded, np.ones(width) / width, mode="valid"), dtype=np.float64)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where `mask` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


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
    for a, b in _runs(grid.mean_g < EXIT_BELOW_G):
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
    for a, b in _runs(high):
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
        for a, b in _runs(still):
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


# -------------------------------------------------------------------------------------- sound


def from_sound(sound: SoundSeries) -> Detection:
    if sound.count < 40:
        return Detection(Source.SOUND, notes=("less than 10 s of audio",))
    per_s = 1.0 / sound.window_s
    wind = _smooth(sound.wind_db, 4)
    low = _smooth(sound.low_db, 4)
    loud, quiet = float(np.percentile(wind, 95)), float(np.median(wind))
    contrast = loud - quiet
    if contrast < 6.0:
        return Detection(Source.SOUND, notes=(f"no loud wind: {contrast:.1f} dB over the median",))
    runs = [(a, b) for a, b in _runs(wind > quiet + 0.4 * contrast) if b - a >= 4 * per_s]
    if not runs:
        return Detection(Source.SOUND, notes=("no sustained wind noise",))
    a, b = max(runs, key=lambda r: r[1] - r[0])
    base = 0.35 + 0.35 * float(np.clip((contrast - 6.0) / 14.0, 0, 1))
    # exit: the engine drone falls away near the start of the wind
    plane = low[max(0, a - int(20 * per_s)) : max(1, a - int(3 * per_s))]
    exit_mark = None
    if len(plane):
        engine = float(np.median(plane))
        lo_i = max(0, a - int(5 * per_s))
        gone = np.flatnonzero(low[lo_i : a + int(5 * per_s)] < engine - 6.0)
        if len(gone):
            i = lo_i + int(gone[0])
            exit_mark = Mark(MarkKind.EXIT, float(sound.t[i]) - 0.5, base, Source.SOUND)
    # opening: the last moment the wind was still at its freefall level
    level = float(np.median(wind[max(a, b - int(10 * per_s)) : b]))
    j = b - 1
    while j > a and wind[j] < level - 2.0:
        j -= 1
    opening = Mark(MarkKind.OPENING, float(sound.t[j]), base, Source.SOUND)
    landing = _sound_landing(sound, j, per_s)
    notes = () if exit_mark else ("no engine drone before the wind",)
    return Detection(Source.SOUND, exit_mark, opening, landing, notes)


def _sound_landing(sound: SoundSeries, open_i: int, per_s: float) -> Mark | None:
    total = sound.total_db
    start = open_i + int(20 * per_s)
    for i in range(start, len(total) - int(5 * per_s)):
        around = np.median(total[max(0, i - int(10 * per_s)) : i - 1])
        after = np.median(total[i + 2 : i + int(10 * per_s)])
        if total[i] > around + 10.0 and after < around - 3.0:
            return Mark(MarkKind.LANDING, float(sound.t[i]), 0.6, Source.SOUND)
    return None


# ------------------------------------------------------------------------------------- fusion


def _combine(kind: MarkKind, tel: Mark | None, snd: Mark | None) -> tuple[Mark | None, str]:
    if tel is None or snd is None:
        return tel or snd, ""
    gap = abs(tel.t - snd.t)
    if gap <= AGREE_S[kind.value]:
        conf = 1.0 - (1.0 - tel.confidence) * (1.0 - snd.confidence)
        return Mark(kind, tel.t, conf, Source.FUSED), ""
    why = f"{kind.value}: telemetry says {tel.t:.1f} s, sound {snd.t:.1f} s"
    return Mark(kind, tel.t, min(tel.confidence, 0.5), Source.TELEMETRY), why


def fuse(telemetry: Detection | None, sound: Detection | None) -> JumpPhases:
    marks: dict[MarkKind, Mark | None] = {}
    reasons: list[str] = []
    for kind in MarkKind:
        mark, why = _combine(
            kind,
            telemetry.mark(kind) if telemetry else None,
            sound.mark(kind) if sound else None,
        )
        marks[kind] = mark
        if why:
            reasons.append(why)
    ordered = [m for m in (marks[k] for k in MarkKind) if m is not None]
    if any(b.t <= a.t for a, b in itertools.pairwise(ordered)):
        reasons.append(
            "the marks are out of order: " + ", ".join(f"{m.kind} {m.t:.1f} s" for m in ordered)
        )
    if marks[MarkKind.EXIT] is None or marks[MarkKind.OPENING] is None:
        reasons.append("no freefall found")
        for det in (d for d in (telemetry, sound) if d is not None):
            reasons.extend(f"{det.source}: {note}" for note in det.notes)
    if marks[MarkKind.LANDING] is None:
        reasons.append("no landing found")
    for mark in ordered:
        if mark.confidence < REVIEW_BELOW:
            reasons.append(f"{mark.kind}: confidence {mark.confidence:.2f} < {REVIEW_BELOW}")
    return JumpPhases(
        marks[MarkKind.EXIT], marks[MarkKind.OPENING], marks[MarkKind.LANDING],
        needs_review=bool(reasons), reasons=tuple(reasons), telemetry=telemetry, sound=sound,
    )  # fmt: skip


def detect(tel: ClipTelemetry | None, sound: SoundSeries | None) -> JumpPhases:
    """Phases of one recording from whatever it has (telemetry, sound, both, or neither)."""
    t_det = from_telemetry(tel) if tel is not None and tel.accl is not None else None
    s_det = from_sound(sound) if sound is not None else None
    return fuse(t_det, s_det)
