"""The marks of a jump (exit, opening, landing) and its phases, as the detectors and the fusion in
`agents/telemetry/phases.py` report them. Pure records."""

from __future__ import annotations

import enum
from dataclasses import dataclass

REVIEW_BELOW = 0.6  # a mark less sure than this sends the jump to review


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
    OPERATOR = "operator"  # set by hand (storage/session_edit.py), confidence 1


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
