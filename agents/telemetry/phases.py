"""The phases of a jump from its time series: plane > exit > freefall > opening > canopy > landing >
ground. Pure: each mark has a time and a confidence in [0, 1], and the marks never go backwards
(exit < opening < landing) in a jump that ships.

Two detectors, each on its own: `motion.from_telemetry` (the physics: the freefall dip below 1 g,
the opening shock, the landing impact, with GPS vertical speed as the check) and
`sound_marks.from_sound` (engine drone, freefall wind, the wind's drop, the landing thump).

`fuse` keeps the telemetry's times (finer), raises the confidence where sound agrees, and sends the
jump to review (`needs_review`, with reasons) where they disagree, a mark is missing or a
confidence is below `REVIEW_BELOW`: an edit without freefall is never shipped.
"""

from __future__ import annotations

import itertools

from agents.telemetry.marks import (
    REVIEW_BELOW,
    Detection,
    JumpPhases,
    Mark,
    MarkKind,
    Phase,
    Source,
)
from agents.telemetry.motion import from_telemetry, vertical_speed
from agents.telemetry.series import ClipTelemetry
from agents.telemetry.sound import SoundSeries
from agents.telemetry.sound_marks import from_sound

__all__ = [
    "REVIEW_BELOW", "Detection", "JumpPhases", "Mark", "MarkKind", "Phase", "Source", "detect",
    "from_sound", "from_telemetry", "fuse", "vertical_speed",
]  # fmt: skip

AGREE_S = {"exit": 1.5, "opening": 2.5, "landing": 4.0}  # telemetry and sound agree within


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
