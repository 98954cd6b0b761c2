"""Exit, opening and landing from the sound alone (cameras without telemetry, and a second opinion):
freefall is the longest run of loud broadband wind; the exit is where the engine drone falls away
at its start, the opening where the wind falls at its end, the landing the thump after which it is
quieter still. Pure (numpy) over `SoundSeries`.
"""

from __future__ import annotations

import numpy as np

from agents.telemetry.marks import Detection, Mark, MarkKind, Source
from agents.telemetry.series import runs, smooth
from agents.telemetry.sound import SoundSeries

# Sound (dB per 0.25 s window). The lags are those of the physics, not fitted to a data set:
# the plane pulls away (its drone falls 6 dB in ~0.5 s), the wind falls as the canopy slows.
WIND_CONTRAST_MIN_DB = 6.0  # freefall wind (95th percentile) must be this far over the median
WIND_RUN_SHARE = 0.4  # "loud" is this share of the contrast over the median ...
WIND_RUN_MIN_S = 4.0  # ... for at least this long (the longest such run is the freefall)
ENGINE_DROP_DB = 6.0  # the exit: the drone falls this far below its level in the plane ...
ENGINE_FADE_LAG_S = 0.5  # ... this long after the exit
WIND_HOLD_DB = 2.0  # the opening: the last moment the wind is within this of its freefall level
THUMP_DB = 10.0  # the landing: a window this far over the level before it ...
QUIETER_DB = 3.0  # ... with the level after it this much below
SOUND_LANDING_CONFIDENCE = 0.6


def from_sound(sound: SoundSeries) -> Detection:
    if sound.count < 40:
        return Detection(Source.SOUND, notes=("less than 10 s of audio",))
    per_s = 1.0 / sound.window_s
    wind = smooth(sound.wind_db, 4)
    low = smooth(sound.low_db, 4)
    loud, quiet = float(np.percentile(wind, 95)), float(np.median(wind))
    contrast = loud - quiet
    if contrast < WIND_CONTRAST_MIN_DB:
        return Detection(Source.SOUND, notes=(f"no loud wind: {contrast:.1f} dB over the median",))
    loud_mask = wind > quiet + WIND_RUN_SHARE * contrast
    loud_runs = [(a, b) for a, b in runs(loud_mask) if b - a >= WIND_RUN_MIN_S * per_s]
    if not loud_runs:
        return Detection(Source.SOUND, notes=("no sustained wind noise",))
    a, b = max(loud_runs, key=lambda r: r[1] - r[0])
    base = 0.35 + 0.35 * float(np.clip((contrast - WIND_CONTRAST_MIN_DB) / 14.0, 0, 1))
    # exit: the engine drone falls away near the start of the wind
    plane = low[max(0, a - int(20 * per_s)) : max(1, a - int(3 * per_s))]
    exit_mark = None
    if len(plane):
        engine = float(np.median(plane))
        lo_i = max(0, a - int(5 * per_s))
        gone = np.flatnonzero(low[lo_i : a + int(5 * per_s)] < engine - ENGINE_DROP_DB)
        if len(gone):
            i = lo_i + int(gone[0])
            exit_mark = Mark(
                MarkKind.EXIT, float(sound.t[i]) - ENGINE_FADE_LAG_S, base, Source.SOUND
            )
    # opening: the last moment the wind was still at its freefall level
    level = float(np.median(wind[max(a, b - int(10 * per_s)) : b]))
    j = b - 1
    while j > a and wind[j] < level - WIND_HOLD_DB:
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
        if total[i] > around + THUMP_DB and after < around - QUIETER_DB:
            t = float(sound.t[i])
            return Mark(MarkKind.LANDING, t, SOUND_LANDING_CONFIDENCE, Source.SOUND)
    return None
