"""The music bed of an edited jump video (issue 15): a configured audio file mixed under the
original sound, faded in and out.

The render plan (agents/render/plan.py) adds the music file as one more input, looped
(`-stream_loop -1`) so a track shorter than the edit covers all of it, and mixes it into the
footage's sound: resampled to the output's rate and stereo, cut to the footage's length, gain
`level_db`, `afade` in from 0 and out ending at the footage's end, then `amix` with the original
sound (normalize=0, so the original stays at 0 dB; duration=first, so the footage's length is the
output's). The music covers the edited footage — the title drawn on it too — but not the
dropzone's intro, which is its own clip with its own sound, the way the watermark and the title
leave it alone. The fades are shortened to half the footage each when the footage is shorter
than both.

The render job (agents/render/job.py, `check_music`) decodes the music file first: a file that
cannot be decoded fails the render permanently with a message naming the file and the setting,
never a video silently rendered without its music.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

SETTING = "SKYREEL_EDIT_MUSIC_PATH"
MIN_LEVEL_DB = -60.0
MAX_LEVEL_DB = 0.0
MAX_FADE_S = 60.0


class MusicError(ValueError):
    """Music-bed values a render cannot use."""


@dataclass(frozen=True)
class Music:
    """The music bed as the render plan takes it."""

    path: Path
    level_db: float = -18.0
    fade_in_s: float = 2.0
    fade_out_s: float = 3.0

    def __post_init__(self) -> None:
        if not MIN_LEVEL_DB <= self.level_db <= MAX_LEVEL_DB:
            raise MusicError(
                f"the music level {self.level_db} dB is not in [{MIN_LEVEL_DB:g}, {MAX_LEVEL_DB:g}]"
            )
        for name in ("fade_in_s", "fade_out_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_FADE_S):
                raise MusicError(f"the music {name} {value} is not in [0, {MAX_FADE_S:g}] s")


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def input_args(url: str) -> list[str]:
    """The music's input: looped without end (the mix is cut to the footage)."""
    return ["-stream_loop", "-1", "-i", url]


def mix_filters(
    music: Music, index: int, footage: str, out: str, total_s: float, audio_rate: int
) -> list[str]:
    """Filter-graph chains mixing input `index` (the music) under the `footage` sound as `out`."""
    fade_in = min(music.fade_in_s, total_s / 2)
    fade_out = min(music.fade_out_s, total_s / 2)
    steps = [
        f"aresample={audio_rate}",
        f"aformat=sample_fmts=fltp:sample_rates={audio_rate}:channel_layouts=stereo",
        f"atrim=duration={_num(total_s)}",
        "asetpts=PTS-STARTPTS",
        f"volume={_num(music.level_db)}dB",
    ]
    if fade_in > 0:
        steps.append(f"afade=t=in:st=0:d={_num(fade_in)}")
    if fade_out > 0:
        steps.append(f"afade=t=out:st={_num(total_s - fade_out)}:d={_num(fade_out)}")
    return [
        f"[{index}:a:0]" + ",".join(steps) + "[music]",
        f"[{footage}][music]amix=inputs=2:duration=first:dropout_transition=0:normalize=0[{out}]",
    ]
