"""The edit: a pure function from a jump's phases and the product's edit settings to an edit
decision list (EDL), the spans of the recording to keep, in output order.

The recording is the session's clips end to end (chapters joined), the timeline the phases are on.
Output order: an optional interview from the start of the first clip, the jump (`door_s` before
the exit to `after_landing_s` after the landing), then an optional slow-motion replay of the exit.
A span that crosses from one clip into the next is split at the boundary, so each span reads
from one input file (the render seeks each input to its spans). An optional music bed is mixed
under the original sound with a fade in and out. No I/O here; the render plan consumes the EDL.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from agents.telemetry.phases import JumpPhases

MIN_SPAN_S = 0.1  # spans shorter than this (rounding at a clip boundary) are dropped


class EditError(ValueError):
    """Phases or settings an edit cannot be made from; `reason` says what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SpanRole(enum.StrEnum):
    INTERVIEW = "interview"
    JUMP = "jump"
    EXIT_REPLAY = "exit_replay"


@dataclass(frozen=True)
class MusicBed:
    """A configured audio file mixed under the original sound."""

    path: str
    level_db: float = -18.0  # the music's gain; the original sound stays at 0 dB
    fade_in_s: float = 2.0
    fade_out_s: float = 3.0

    def __post_init__(self) -> None:
        if not self.path:
            raise EditError("the music bed needs a file path")
        if not -60 <= self.level_db <= 0:
            raise EditError(f"the music level must be in [-60, 0] dB, got {self.level_db}")
        for name in ("fade_in_s", "fade_out_s"):
            if not 0 <= getattr(self, name) <= 60:
                raise EditError(f"the music {name} must be in [0, 60] s, got {getattr(self, name)}")


@dataclass(frozen=True)
class EditSettings:
    """The product's edit; the defaults are what a tandem video gets unless a dropzone says."""

    door_s: float = 10.0  # seconds kept before the exit: the door, the count, the lean out
    after_landing_s: float = 8.0  # seconds kept after the landing: the passenger's first words
    interview_s: float = 0.0  # seconds of pre-jump interview from the first clip; 0 = none
    interview_start_s: float = 0.0  # where in the first clip the interview starts
    exit_replay_s: float = 0.0  # seconds of the exit replayed in slow motion; 0 = none
    exit_replay_lead_s: float = 1.0  # the replay starts this long before the exit
    exit_replay_speed: float = 0.5  # playback speed of the replay (0.5 = half speed)
    music: MusicBed | None = None

    def __post_init__(self) -> None:
        for name in ("door_s", "after_landing_s", "interview_s", "interview_start_s",
                     "exit_replay_s", "exit_replay_lead_s"):  # fmt: skip
            if getattr(self, name) < 0:
                raise EditError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.1 <= self.exit_replay_speed <= 1.0:
            raise EditError(f"exit_replay_speed must be in [0.1, 1], got {self.exit_replay_speed}")


@dataclass(frozen=True)
class ClipSpan:
    """One input clip on the recording's timeline."""

    clip: str
    duration_s: float


@dataclass(frozen=True)
class Span:
    """Keep `clip` from `start` to `end` (seconds in that clip), played at `speed`."""

    clip: str
    start: float
    end: float
    speed: float
    role: SpanRole

    @property
    def output_s(self) -> float:
        return (self.end - self.start) / self.speed


@dataclass(frozen=True)
class EditDecisionList:
    spans: tuple[Span, ...]
    music: MusicBed | None
    total_s: float


def _split(clips: Sequence[ClipSpan], start: float, end: float, speed: float,
           role: SpanRole) -> list[Span]:  # fmt: skip
    """A timeline range as per-clip spans."""
    spans = []
    offset = 0.0
    for clip in clips:
        lo, hi = max(start, offset), min(end, offset + clip.duration_s)
        if hi - lo >= MIN_SPAN_S:
            spans.append(Span(clip.clip, lo - offset, hi - offset, speed, role))
        offset += clip.duration_s
    return spans


def build_edl(
    phases: JumpPhases, clips: Sequence[ClipSpan], settings: EditSettings
) -> EditDecisionList:
    if not clips or any(c.duration_s <= 0 for c in clips):
        raise EditError("an edit needs at least one clip, each with a positive duration")
    if phases.exit is None or phases.opening is None:
        raise EditError("no freefall was found: the session needs review before it is edited")
    total = sum(c.duration_s for c in clips)
    if not 0 <= phases.exit.t < total:
        raise EditError(
            f"the exit at {phases.exit.t:.1f} s is outside the recording ({total:.1f} s)"
        )
    jump_start = max(0.0, phases.exit.t - settings.door_s)
    landing = phases.landing.t if phases.landing is not None else total
    jump_end = min(total, landing + settings.after_landing_s)
    spans: list[Span] = []
    if settings.interview_s > 0:
        first = clips[0]
        lo = min(settings.interview_start_s, first.duration_s)
        hi = min(lo + settings.interview_s, first.duration_s, jump_start)
        if hi - lo >= MIN_SPAN_S:
            spans.append(Span(first.clip, lo, hi, 1.0, SpanRole.INTERVIEW))
    spans += _split(clips, jump_start, jump_end, 1.0, SpanRole.JUMP)
    if settings.exit_replay_s > 0:
        lo = max(0.0, phases.exit.t - settings.exit_replay_lead_s)
        hi = min(lo + settings.exit_replay_s, phases.opening.t, total)
        spans += _split(clips, lo, hi, settings.exit_replay_speed, SpanRole.EXIT_REPLAY)
    return EditDecisionList(tuple(spans), settings.music, sum(s.output_s for s in spans))
