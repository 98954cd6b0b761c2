"""Synthetic tandem jumps: a seeded, randomised profile, its sensor series, its sound, its truth.

Climb in the plane (engine drone, 1 g with vibration and the odd air pocket), the door (level
flight, wind noise), exit (the relative wind of the plane's airspeed, then a drop to a terminal
~50 m/s under drogue: specific force dips to ~0.3 g and comes back to 1 g), ~60 s of freefall
(loud broadband wind), the opening (3–4 g shock, vertical speed down to ~5 m/s, the wind drops),
4–5 min of canopy (swings, turns, ~5 m/s), the landing (impact, flare) and the ground. GPS has no
lock for a while (zeros, fix 0) and drops out; some cameras have no GPS, some no telemetry.

`compress` scales the long, dull phases (climb, door, freefall, canopy, ground) so tests can make
short files; the physics of exit, opening and landing keeps its real time constants. Pure: numpy
only; `agents/telemetry/synthetic.py` writes a profile as an MP4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.telemetry.series import (
    STANDARD_GRAVITY,
    ClipTelemetry,
    FloatArray,
    GpsFix,
    GpsSeries,
    TelemetryStatus,
    Vector3Series,
    drop_unlocked,
)

G = STANDARD_GRAVITY
IMU_RATE_HZ = 200.0
GPS_RATE_HZ = 18.0
AUDIO_RATE_HZ = 16_000
AIR_POCKET_SHARE = 0.2  # share of jumps with a sustained dip in the plane (a trap for the exit)
MUFFLED_SHARE = 0.15  # share of jumps whose sound has little wind in it (a trap for sound)
_SIM_RATE_HZ = 50.0  # the kinematics are computed at this rate and interpolated to each sensor


@dataclass(frozen=True)
class JumpTruth:
    """Where the marks really are (seconds from the start of the recording)."""

    exit_s: float
    opening_s: float
    landing_s: float
    duration_s: float


@dataclass(frozen=True)
class JumpParams:
    seed: int
    compress: float
    climb_s: float
    door_s: float
    freefall_s: float
    canopy_s: float
    ground_s: float
    terminal_ms: float
    airspeed_ms: float
    opening_peak_g: float
    landing_impact_g: float
    ground_elevation_m: float
    has_telemetry: bool
    has_gps: bool
    gps_lock_s: float
    audio_gain: float
    air_pocket_s: float | None  # a sustained dip (~1.5 s at ~0.5 g) in the plane, at this time
    muffled: bool  # the camera's housing takes 20 dB off the wind noise


@dataclass(frozen=True)
class JumpProfile:
    params: JumpParams
    truth: JumpTruth
    accl: Vector3Series  # m/s²
    gyro: Vector3Series  # rad/s
    gps: GpsSeries  # as the camera writes it: zeros with fix 0 before the lock and in dropouts
    audio: FloatArray  # mono, AUDIO_RATE_HZ, in [-1, 1]

    def telemetry(self) -> ClipTelemetry:
        """What the reader would return for this jump (unlocked GPS dropped)."""
        if not self.params.has_telemetry:
            return ClipTelemetry("synthetic", TelemetryStatus.NO_TELEMETRY, self.truth.duration_s)
        gps, dropped = drop_unlocked(self.gps) if self.params.has_gps else (None, 0)
        return ClipTelemetry(
            "synthetic", TelemetryStatus.OK, self.truth.duration_s, "synthetic",
            accl=self.accl, gyro=self.gyro, gps=gps if gps is not None and gps.count else None,
            dropped_unlocked=dropped,
        )  # fmt: skip


def draw_params(
    seed: int, compress: float = 1.0, has_telemetry: bool = True, has_gps: bool = True
) -> JumpParams:
    if not 0.05 <= compress <= 1.0:
        raise ValueError(f"compress must be in [0.05, 1], got {compress}")
    rng = np.random.default_rng(seed)
    c = compress
    return JumpParams(
        seed=seed, compress=c,
        climb_s=float(rng.uniform(90, 200)) * c, door_s=float(rng.uniform(25, 50)) * c,
        freefall_s=float(rng.uniform(50, 65)) * c, canopy_s=float(rng.uniform(240, 300)) * c,
        ground_s=max(10.0, float(rng.uniform(20, 40)) * c), terminal_ms=float(rng.uniform(46, 55)),
        airspeed_ms=float(rng.uniform(32, 42)), opening_peak_g=float(rng.uniform(3.0, 4.0)),
        landing_impact_g=float(rng.uniform(1.0, 2.5)),
        ground_elevation_m=float(rng.uniform(0, 600)),
        has_telemetry=has_telemetry, has_gps=has_gps and has_telemetry,
        gps_lock_s=float(rng.uniform(5, 40)) * c, audio_gain=float(rng.uniform(0.5, 1.5)),
        air_pocket_s=float(rng.uniform(0.3, 0.9)) if rng.random() < AIR_POCKET_SHARE else None,
        muffled=bool(rng.random() < MUFFLED_SHARE),
    )  # fmt: skip


def truth_of(p: JumpParams) -> JumpTruth:
    """Where the marks of a jump drawn with `p` are, without generating its series."""
    exit_s = p.climb_s + p.door_s
    open_s = exit_s + p.freefall_s
    land_s = open_s + p.canopy_s
    return JumpTruth(exit_s, open_s, land_s, land_s + p.ground_s)


def _kinematics(
    p: JumpParams, t: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray, JumpTruth]:
    """Vertical speed (down +), horizontal airspeed and specific force (g) at times `t`."""
    truth = truth_of(p)
    exit_s, open_s, land_s = truth.exit_s, truth.opening_s, truth.landing_s
    vd = np.zeros_like(t)
    vh = np.zeros_like(t)
    force = np.ones_like(t)
    climb = t < p.climb_s
    vd[climb], vh[climb] = -5.0, p.airspeed_ms + 5
    door = (t >= p.climb_s) & (t < exit_s)
    vh[door] = p.airspeed_ms
    ff = (t >= exit_s) & (t < open_s)
    tf = t[ff] - exit_s
    vd[ff] = p.terminal_ms * np.tanh(G * tf / p.terminal_ms)
    vh[ff] = p.airspeed_ms * np.exp(-tf / 2.5)
    force[ff] = (vd[ff] ** 2 + vh[ff] ** 2) / p.terminal_ms**2
    force[ff] += 0.2 * np.exp(-(((tf - 3.0) / 0.3) ** 2))  # the drogue
    v_open = p.terminal_ms * np.tanh(G * p.freefall_s / p.terminal_ms)
    can = t >= open_s
    tc = t[can] - open_s
    vd[can] = 5.0 + (v_open - 5.0) * np.exp(-np.clip(tc - 0.8, 0, None) / 1.0)
    rise, decay = 1.6, 2.0
    shock = np.where(tc < rise, np.sin(0.5 * np.pi * tc / rise) ** 2, np.exp(-(tc - rise) / decay))
    force[can] = 1.0 + (p.opening_peak_g - 1.0) * shock
    vh[can] = 10.0
    # swings and a turn or two under canopy
    swing = 0.08 * np.sin(2 * np.pi * 0.3 * tc)
    for start in rng.uniform(20 * p.compress, max(25 * p.compress, p.canopy_s - 30), 2):
        turn = np.exp(-(((tc - start) / 3.0) ** 2))
        swing += 0.4 * turn
        vd[can] += 6.0 * turn
    force[can] += np.where(tc > 8, swing, 0)
    ground = t >= land_s
    tg = t[ground] - land_s
    vd[ground], vh[ground] = 0.0, 0.0
    flare = (t >= land_s - 4) & (t < land_s)
    vd[flare] = np.minimum(vd[flare], 1.5 + (land_s - t[flare]))
    force[ground] = 1.0 + p.landing_impact_g * np.exp(-((tg / 0.15) ** 2))
    # air pockets in the plane: short dips that must not look like an exit
    for start in rng.uniform(5, max(6, exit_s - 8), 3):
        force -= 0.35 * np.exp(-(((t - start) / 0.2) ** 2)) * (t < exit_s - 3)
    if p.air_pocket_s is not None:  # a fraction of the way through the climb
        start = p.air_pocket_s * p.climb_s
        force -= 0.5 * ((t >= start) & (t < start + 1.5))
    return vd, vh, force, truth


def _vectors(magnitude_g: FloatArray, t: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Specific force as a 3-axis vector: the magnitude along a slowly turning direction."""
    phase = np.cumsum(rng.normal(0, 0.02, (3, len(t))), axis=1)
    direction = np.stack([np.cos(phase[0]) + 2.0, np.sin(phase[1]), np.sin(phase[2]) * 0.5], 1)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return np.asarray(direction * (magnitude_g * G)[:, None], dtype=np.float64)


def _gps(p: JumpParams, truth: JumpTruth, t_sim: FloatArray, vd: FloatArray, vh: FloatArray,
         rng: np.random.Generator) -> GpsSeries:  # fmt: skip
    t = np.arange(0, truth.duration_s, 1 / GPS_RATE_HZ)
    alt_sim = -np.cumsum(vd) / _SIM_RATE_HZ
    alt_sim += p.ground_elevation_m - np.interp(truth.landing_s, t_sim, alt_sim)
    dist = np.cumsum(vh) / _SIM_RATE_HZ
    heading = rng.uniform(0, 2 * np.pi)
    north, east = dist * np.cos(heading), dist * np.sin(heading)
    lat = 46.0 + np.interp(t, t_sim, north) / 111_320 + rng.normal(0, 1e-5, len(t))
    lon = 7.0 + np.interp(t, t_sim, east) / 77_000 + rng.normal(0, 1e-5, len(t))
    alt = np.interp(t, t_sim, alt_sim) + rng.normal(0, 1.5, len(t))
    s2 = np.interp(t, t_sim, vh) + rng.normal(0, 0.3, len(t))
    s3 = np.hypot(s2, np.interp(t, t_sim, vd))
    fix = np.full(len(t), int(GpsFix.THREE_D), dtype=np.int64)
    fix[t < p.gps_lock_s] = int(GpsFix.NONE)
    for _ in range(int(rng.integers(1, 4))):  # dropouts, often in freefall
        start = rng.uniform(truth.exit_s - 10, truth.landing_s)
        fix[(t >= start) & (t < start + rng.uniform(2, 10))] = int(GpsFix.NONE)
    lost = fix == GpsFix.NONE
    for a in (lat, lon, alt, s2, s3):
        a[lost] = 0.0
    return GpsSeries(t, lat, lon, alt, s2, s3, fix)


def _audio(p: JumpParams, truth: JumpTruth, t_sim: FloatArray, vd: FloatArray, vh: FloatArray,
           rng: np.random.Generator) -> FloatArray:  # fmt: skip
    """Engine drone (three harmonics) until the exit, wind noise with the airspeed squared, the
    door's wind, a thump at touchdown. Envelopes are built at 100 Hz and interpolated."""
    n = int(truth.duration_s * AUDIO_RATE_HZ)
    t_env = np.arange(0, truth.duration_s + 0.02, 0.01)
    engine_env = np.where(t_env < truth.exit_s, 0.25, 0.25 * np.exp(-(t_env - truth.exit_s) / 0.8))
    air = np.hypot(np.interp(t_env, t_sim, vd), np.interp(t_env, t_sim, vh)) / p.terminal_ms
    wind_env = np.clip(0.5 * air**2, 0.03, 0.6)
    door_open = truth.exit_s - rng.uniform(0.4, 0.8) * p.door_s
    wind_env = np.where(t_env < door_open, 0.02, wind_env)
    wind_env = np.where((t_env >= door_open) & (t_env < truth.exit_s), 0.08, wind_env)
    wind_env = np.where(t_env >= truth.landing_s, 0.01, wind_env) + 0.003
    if p.muffled:  # the housing takes the wind down to near the camera's own noise floor
        wind_env = wind_env * 0.1 + 0.02
    t = np.arange(n, dtype=np.float64) / AUDIO_RATE_HZ
    f0 = rng.uniform(70, 110)
    table_t = np.arange(4096) / 4096
    table = sum(np.sin(2 * np.pi * k * table_t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
    engine = np.asarray(table, np.float32)[((t * f0) % 1.0 * 4096).astype(np.int64)]
    signal = np.interp(t, t_env, engine_env).astype(np.float32) * engine
    signal += np.interp(t, t_env, wind_env).astype(np.float32) * rng.standard_normal(
        n, dtype=np.float32
    )
    near = np.abs(t - truth.landing_s) < 0.3
    signal[near] += (0.5 * np.exp(-(((t[near] - truth.landing_s) / 0.05) ** 2))
                     * np.sin(2 * np.pi * 60 * t[near])).astype(np.float32)  # fmt: skip
    return np.asarray(np.clip(signal * (p.audio_gain * 0.8), -1, 1), dtype=np.float32)


def generate(params: JumpParams) -> JumpProfile:
    """The jump's series and truth; the same params always give the same jump."""
    rng = np.random.default_rng(params.seed + 1_000_003)
    total = params.climb_s + params.door_s + params.freefall_s + params.canopy_s + params.ground_s
    t_sim = np.arange(0, total, 1 / _SIM_RATE_HZ)
    vd, vh, force, truth = _kinematics(params, t_sim, rng)
    t_imu = np.arange(0, truth.duration_s, 1 / IMU_RATE_HZ)
    vibration = np.where(t_imu < truth.exit_s, 0.06, 0.04)
    mag = np.interp(t_imu, t_sim, force) + rng.normal(0, 1, len(t_imu)) * vibration
    accl = Vector3Series(t_imu, _vectors(np.abs(mag), t_imu, rng))
    gyro = Vector3Series(t_imu, rng.normal(0, 0.05, (len(t_imu), 3)))
    gps = _gps(params, truth, t_sim, vd, vh, rng)
    audio = _audio(params, truth, t_sim, vd, vh, rng)
    return JumpProfile(params, truth, accl, gyro, gps, audio)
